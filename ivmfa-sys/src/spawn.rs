//! Running the `notify_command` as root, from inside whatever process loaded the module.
//!
//! It is run only if no one but root can have written it, since whoever can replace it runs
//! code as root.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Why `program` may not be run as root, if it may not.
pub(crate) fn check_program(program: &Path) -> Result<(), String> {
    if !program.is_absolute() {
        return Err("refused to run it: it is not an absolute path".into());
    }
    let mut at = PathBuf::from("/");
    check_entry(&at, false)?;
    let mut names = program
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .peekable();
    if names.peek().is_none() {
        return Err("refused to run it: / is not a program".into());
    }
    while let Some(name) = names.next() {
        let Component::Normal(name) = name else {
            return Err("refused to run it: its path goes up with ..".into());
        };
        at.push(name);
        check_entry(&at, names.peek().is_none())?;
    }
    Ok(())
}

/// Checks one step of the path, from `/` down, so each entry is looked at only once its
/// directory is known to be root's alone (and so cannot change under us).
fn check_entry(path: &Path, is_program: bool) -> Result<(), String> {
    const RULE: &str = "the program and every directory above it must be owned by root, \
                        writable by root alone and not symbolic links";
    let meta = fs::symlink_metadata(path)
        .map_err(|e| format!("cannot start it: {}: {e}", path.display()))?;
    let refuse = |why: String| {
        Err(format!(
            "refused to run it: {} {why}; {RULE}",
            path.display()
        ))
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        return refuse(match fs::read_link(path) {
            Ok(target) => format!("is a symbolic link (to {})", target.display()),
            Err(_) => "is a symbolic link".into(),
        });
    }
    if meta.uid() != 0 {
        return refuse(format!("is owned by uid {}, not root", meta.uid()));
    }
    if meta.mode() & 0o002 != 0 {
        return refuse("is writable by others".into());
    }
    if meta.mode() & 0o020 != 0 {
        return refuse("is writable by its group".into());
    }
    if !is_program && !kind.is_dir() {
        return refuse("is not a directory".into());
    }
    if is_program && !kind.is_file() {
        return refuse("is not a regular file".into());
    }
    if is_program && meta.mode() & 0o111 == 0 {
        return refuse("is not executable".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_program_root_alone_can_have_written_passes() {
        assert_eq!(check_program(Path::new("/usr/bin/true")), Ok(()));
        let refused = |path: &str, why: &str| {
            let err = check_program(Path::new(path)).unwrap_err();
            assert!(err.contains(why), "{path}: {err}");
        };
        refused("usr/bin/true", "not an absolute path");
        refused("/usr/bin/../bin/true", "..");
        refused("/", "not a program");
        refused("/usr/bin", "is not a regular file");
        refused("/etc/passwd", "is not executable");
        refused("/usr/bin/true/x", "is not a directory");
        refused("/no/such/program", "cannot start it: /no:");
        // The sticky, world-writable temporary directory is no place for a root program.
        refused("/tmp/x", "/tmp is writable by others");
        if fs::symlink_metadata("/bin").is_ok_and(|m| m.file_type().is_symlink()) {
            refused("/bin/true", "/bin is a symbolic link (to usr/bin)");
        }
    }
}
