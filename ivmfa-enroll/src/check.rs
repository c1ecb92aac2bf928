//! `check`: the doctor. Reads what decides whether logins ask for a code — the config, the
//! store, the PAM stacks that load the module, sshd's effective settings — and says plainly
//! what is wrong and how to fix it. It errs on the side of reporting: a false "all is well"
//! here means logins without MFA.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use ivmfa_core::config::{Backend, Config, Unenrolled};
use ivmfa_core::store::Store;
use ivmfa_core::username::UserName;

#[derive(Default)]
pub struct Report {
    problems: usize,
}

impl Report {
    pub fn ok(&self, what: &str) {
        println!("ok:      {what}");
    }
    pub fn note(&self, what: &str) {
        println!("note:    {what}");
    }
    pub fn problem(&mut self, what: &str, fix: &str) {
        self.problems += 1;
        println!("problem: {what}\n  fix:   {fix}");
    }
}

/// Reports what it finds; returns whether all is well. Every fault is a finding, not an error.
pub fn run(
    config: Option<&Path>,
    store: Option<&Path>,
    pam_dir: &Path,
    sshd: &Path,
    logins: &Logins,
) -> bool {
    let mut r = Report::default();
    let euid = ivmfa_sys::euid();
    let config_args: Vec<String> = config
        .map(|p| vec![format!("config={}", p.display())])
        .unwrap_or_default();
    let mut resolved = match Config::resolve(&config_args, euid) {
        Ok(c) => {
            r.ok(&format!(
                "config {}",
                config.map_or(ivmfa_core::config::DEFAULT_CONFIG.into(), |p| p
                    .display()
                    .to_string())
            ));
            c
        }
        Err(e) => {
            r.problem(
                &e.to_string(),
                "fix the file; until then every login through pam_ivmfa is denied",
            );
            Config::default()
        }
    };
    if let Some(s) = store {
        // Through the same check as the config key, as every other command does.
        if let Err(e) = resolved.set("store", Some(&s.display().to_string())) {
            r.problem(&e.to_string(), "give --store as an absolute path");
        }
    }
    // A fleet host keeps nothing in its store: what matters is the database, as it sees it.
    let in_store = if resolved.backend == Backend::Postgres {
        crate::check_fleet::check(&mut r, &resolved);
        Vec::new()
    } else {
        check_store(&mut r, &Store::new(&resolved.store, euid))
    };
    let sshd_stack = check_pam(&mut r, pam_dir, &config_args, euid);
    let users = logins.users.as_deref().unwrap_or(&in_store);
    // Without --user, the users to evaluate sshd's Match blocks for come from the store.
    let nobody = if resolved.backend == Backend::Postgres {
        "check does not list the fleet's users"
    } else {
        "nobody is in the store"
    };
    check_sshd(&mut r, sshd, sshd_stack, users, logins, nobody);

    match r.problems {
        0 => println!("\nNo problems found."),
        1 => println!("\n1 problem found."),
        n => println!("\n{n} problems found."),
    }
    r.problems == 0
}

/// Returns the users in the store, for the evaluation of sshd's Match blocks.
fn check_store(r: &mut Report, store: &Store) -> Vec<UserName> {
    let users = match store.users() {
        Ok(users) => users,
        Err(e) => {
            r.problem(
                &e.to_string(),
                "fix the store directory: root-owned, mode 0700",
            );
            return Vec::new();
        }
    };
    let mut enrolled = 0;
    for user in &users {
        // Read without the lock, which would create lock files: the doctor changes nothing.
        let checked = store
            .load_enrollment(user)
            .and_then(|e| store.peek_state(user).map(|_| e));
        match checked {
            Ok(Some(_)) => enrolled += 1,
            Ok(None) => {}
            Err(e) => r.problem(
                &format!("{user}: {e}"),
                e.hint()
                    .unwrap_or("until this is fixed every login of this user is denied"),
            ),
        }
    }
    match store.reset_requests() {
        Ok(requests) if !requests.is_empty() => r.note(&format!(
            "{} reset request(s) pending: ivmfa-enroll reset list",
            requests.len()
        )),
        Ok(_) => {}
        Err(e) => r.problem(
            &e.to_string(),
            e.hint().unwrap_or("fix or remove the request file"),
        ),
    }
    if enrolled == 0 {
        r.note(&format!(
            "nobody is enrolled in {}; enroll users with ivmfa-enroll enroll USER",
            store.root().display()
        ));
    } else {
        r.ok(&format!(
            "store {}: {enrolled} user(s) enrolled",
            store.root().display()
        ));
    }
    users
}

/// One `auth` entry of a PAM stack, after includes are expanded.
#[derive(Clone, Debug)]
struct Entry {
    /// `file line N`, for messages.
    at: String,
    control: String,
    module: String,
    args: Vec<String>,
    /// `-auth`: libpam skips the line silently when the module cannot be loaded.
    dash: bool,
    /// Substack depth, as libpam counts it: `done`, `die` and jumps end at its edge.
    level: usize,
    /// The `auth substack FILE` line itself. libpam runs nothing for it but counts it, with
    /// everything inside, as one module when a jump skips modules.
    substack: bool,
}

/// What libpam does after a module returns: the actions of pam.conf(5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Ignore,
    Ok,
    Done,
    Bad,
    Die,
    Reset,
    Jump(usize),
}

impl Action {
    fn parse(word: &str) -> Action {
        match word {
            "ignore" => Action::Ignore,
            "ok" => Action::Ok,
            "done" => Action::Done,
            "die" => Action::Die,
            "reset" => Action::Reset,
            "bad" => Action::Bad,
            // libpam rejects other words; the line then counts as a failure.
            n => n.parse().map_or(Action::Bad, Action::Jump),
        }
    }
}

/// A control field as libpam reads it: actions for named return values, and the rest.
struct Control {
    values: Vec<(String, Action)>,
    default: Action,
}

impl Control {
    fn of(control: &str) -> Control {
        use Action as A;
        let c = control.to_ascii_lowercase();
        let named = |pairs: &[(&str, Action)], default| Control {
            values: pairs.iter().map(|(v, a)| ((*v).to_owned(), *a)).collect(),
            default,
        };
        match c.as_str() {
            "required" => named(
                &[
                    ("success", A::Ok),
                    ("new_authtok_reqd", A::Ok),
                    ("ignore", A::Ignore),
                ],
                A::Bad,
            ),
            "requisite" => named(
                &[
                    ("success", A::Ok),
                    ("new_authtok_reqd", A::Ok),
                    ("ignore", A::Ignore),
                ],
                A::Die,
            ),
            "optional" => named(
                &[("success", A::Ok), ("new_authtok_reqd", A::Ok)],
                A::Ignore,
            ),
            "sufficient" => named(
                &[("success", A::Done), ("new_authtok_reqd", A::Done)],
                A::Ignore,
            ),
            "binding" => named(
                &[
                    ("success", A::Done),
                    ("new_authtok_reqd", A::Done),
                    ("ignore", A::Ignore),
                ],
                A::Bad,
            ),
            _ => {
                let mut values = Vec::new();
                // libpam: a value the brackets leave out counts as a failure.
                let mut default = A::Bad;
                for pair in c.trim_matches(['[', ']']).split_whitespace() {
                    let Some((value, action)) = pair.split_once('=') else {
                        continue;
                    };
                    if value == "default" {
                        default = Action::parse(action);
                    } else {
                        values.push((value.to_owned(), Action::parse(action)));
                    }
                }
                Control { values, default }
            }
        }
    }

    fn action(&self, value: &str) -> Action {
        self.values
            .iter()
            .find_map(|(v, a)| (v == value).then_some(*a))
            .unwrap_or(self.default)
    }

    /// What follows a failure: every action but those of success, of "right password but
    /// expired" and of PAM_IGNORE (a password module does not answer a wrong password so).
    fn on_failure(&self) -> Vec<Action> {
        let mut out = vec![self.default];
        for (v, a) in &self.values {
            if !matches!(v.as_str(), "success" | "new_authtok_reqd" | "ignore") && !out.contains(a)
            {
                out.push(*a);
            }
        }
        out
    }

    fn any(&self) -> Vec<Action> {
        let mut out = vec![self.default];
        for (_, a) in &self.values {
            if !out.contains(a) {
                out.push(*a);
            }
        }
        out
    }
}

impl Entry {
    fn module_name(&self) -> &str {
        self.module.rsplit('/').next().unwrap_or(&self.module)
    }

    fn named_ivmfa(&self) -> bool {
        !self.substack && self.module_name() == "pam_ivmfa.so"
    }

    /// Modules that ask for no secret of the user. Anything else before pam_ivmfa.so is
    /// taken for a password step (pam_unix, pam_sss, pam_ldap, pam_krb5, pam_winbind,
    /// pam_systemd_home, another OTP module...), which errs towards reporting.
    fn asks_no_secret(&self) -> bool {
        let name = self.module_name();
        matches!(
            name.strip_suffix(".so").unwrap_or(name),
            "pam_access"
                | "pam_cap"
                | "pam_debug"
                | "pam_deny"
                | "pam_echo"
                | "pam_env"
                | "pam_faildelay"
                | "pam_faillock"
                | "pam_gnome_keyring"
                | "pam_group"
                | "pam_issue"
                | "pam_keyinit"
                | "pam_kwallet5"
                | "pam_lastlog"
                | "pam_limits"
                | "pam_listfile"
                | "pam_localuser"
                | "pam_loginuid"
                | "pam_mail"
                | "pam_mkhomedir"
                | "pam_motd"
                | "pam_nologin"
                | "pam_permit"
                | "pam_rootok"
                | "pam_securetty"
                | "pam_selinux"
                | "pam_sepermit"
                | "pam_shells"
                | "pam_succeed_if"
                | "pam_tally2"
                | "pam_time"
                | "pam_umask"
                | "pam_usertype"
                | "pam_warn"
                | "pam_wheel"
        )
    }

    /// A success here can end the stack before later modules run.
    fn success_ends_stack(&self) -> bool {
        matches!(Control::of(&self.control).action("success"), Action::Done)
    }

    /// The number of modules a success jumps over, for `[success=N ...]`.
    fn success_jump(&self) -> Option<usize> {
        match Control::of(&self.control).action("success") {
            Action::Jump(n) => Some(n),
            _ => None,
        }
    }
}

/// The auth entries of `file`, with `@include`, `include` and `substack` expanded.
fn expand(pam_dir: &Path, file: &str, depth: usize, level: usize, out: &mut Vec<Entry>) {
    // libpam itself gives up on deeper nesting; so do we (and on include loops).
    if depth > 10 {
        return;
    }
    let path = pam_dir.join(file);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = format!("{} line {}", path.display(), i + 1);
        match words.as_slice() {
            [include, name] if include.eq_ignore_ascii_case("@include") => {
                expand(pam_dir, name, depth + 1, level, out)
            }
            [kind, rest @ ..]
                if kind.trim_start_matches('-').eq_ignore_ascii_case("auth")
                    && !rest.is_empty() =>
            {
                // A bracketed control may contain spaces: [success=ok default=die].
                let joined = rest.join(" ");
                let (control, after) = if joined.starts_with('[') {
                    match joined.split_once(']') {
                        Some((c, a)) => (format!("{c}]"), a.trim().to_owned()),
                        None => (joined.clone(), String::new()),
                    }
                } else {
                    let (c, a) = joined.split_once(' ').unwrap_or((&joined, ""));
                    (c.to_owned(), a.to_owned())
                };
                let mut words = after.split_whitespace().map(str::to_owned);
                let module = words.next().unwrap_or_default();
                let substack = control.eq_ignore_ascii_case("substack");
                if control.eq_ignore_ascii_case("include") {
                    expand(pam_dir, &module, depth + 1, level, out);
                    continue;
                }
                out.push(Entry {
                    at,
                    control,
                    module: module.clone(),
                    args: words.collect(),
                    dash: kind.starts_with('-'),
                    level,
                    substack,
                });
                if substack {
                    expand(pam_dir, &module, depth + 1, level + 1, out);
                }
            }
            _ => {}
        }
    }
}

/// Where libpam finds modules named without a path.
/// The one list of module directories, shared with packaging/install.sh.
const MODULE_DIRS: &str = include_str!("../../packaging/pam-module-dirs");

/// The module directories present on this machine, the `*` of a multiarch entry expanded.
fn module_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for pattern in MODULE_DIRS
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('/'))
    {
        match pattern.split_once("/*/") {
            Some((parent, rest)) => {
                let Ok(entries) = std::fs::read_dir(parent) else {
                    continue;
                };
                let mut found: Vec<PathBuf> = entries
                    .flatten()
                    .map(|e| e.path().join(rest))
                    .filter(|d| d.is_dir())
                    .collect();
                found.sort();
                dirs.extend(found);
            }
            None => dirs.push(PathBuf::from(pattern)),
        }
    }
    dirs
}

/// The files a module field can name: itself when absolute, else the same name in each
/// module directory (libpam appends it, `..` and all, to its own).
fn module_files(module: &str) -> Vec<PathBuf> {
    if module.starts_with('/') {
        return vec![PathBuf::from(module)];
    }
    module_dirs().iter().map(|d| d.join(module)).collect()
}

fn module_exists(module: &str) -> bool {
    module_files(module).iter().any(|p| p.exists())
}

/// Builds big enough for a debug build of the module; nothing bigger is read.
const MODULE_SIZE_LIMIT: u64 = 256 << 20;

/// Recognises pam_ivmfa.so whatever a stack calls it: a symlink, a hard link or a copy
/// under another name, a relative path, an absolute one. Each is a way to load the module
/// that the stack checks would otherwise miss.
#[derive(Default)]
struct Modules {
    /// (device, inode) of the files known to be the module.
    known: Vec<(u64, u64)>,
    /// What reading each other file found, so that each is read once.
    read: HashMap<(u64, u64), bool>,
}

impl Modules {
    /// Starts from the installed module and from every file a stack loads as pam_ivmfa.so.
    fn new(stacks: &[(String, Vec<Entry>)]) -> Modules {
        let mut m = Modules::default();
        let installed = module_dirs().into_iter().map(|d| d.join("pam_ivmfa.so"));
        let named = stacks
            .iter()
            .flat_map(|(_, s)| s)
            .filter(|e| e.named_ivmfa())
            .flat_map(|e| module_files(&e.module));
        for path in installed.chain(named) {
            if let Ok(meta) = std::fs::metadata(&path) {
                m.known.push((meta.dev(), meta.ino()));
            }
        }
        m
    }

    fn is_ivmfa(&mut self, entry: &Entry) -> bool {
        if entry.substack {
            return false;
        }
        if entry.named_ivmfa() {
            return true;
        }
        module_files(&entry.module)
            .iter()
            .any(|path| self.file_is_ivmfa(path))
    }

    fn file_is_ivmfa(&mut self, path: &Path) -> bool {
        let Ok(meta) = std::fs::metadata(path) else {
            return false;
        };
        let id = (meta.dev(), meta.ino());
        if self.known.contains(&id) {
            return true;
        }
        // A symlink to the module, or to cargo's build of it.
        let target = path.canonicalize().ok();
        let target_name = target.as_deref().and_then(Path::file_name);
        if target_name.is_some_and(|n| n == "pam_ivmfa.so" || n == "libpam_ivmfa.so") {
            return true;
        }
        *self
            .read
            .entry(id)
            .or_insert_with(|| holds_the_module(path))
    }
}

/// Whether the file is a build of pam_ivmfa.so, of this version or another: a PAM module
/// that carries the module's default config and store paths.
fn holds_the_module(path: &Path) -> bool {
    use std::io::Read;
    // Non-blocking, so that a FIFO named in a stack cannot hang the doctor.
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    else {
        return false;
    };
    match file.metadata() {
        Ok(m) if m.is_file() && m.len() <= MODULE_SIZE_LIMIT => {}
        _ => return false,
    }
    let mut bytes = Vec::new();
    if file
        .take(MODULE_SIZE_LIMIT)
        .read_to_end(&mut bytes)
        .is_err()
    {
        return false;
    }
    [
        b"pam_sm_authenticate".as_slice(),
        ivmfa_core::config::DEFAULT_CONFIG.as_bytes(),
        ivmfa_core::config::DEFAULT_STORE.as_bytes(),
    ]
    .iter()
    .all(|needle| contains(&bytes, needle))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    hay.iter()
        .enumerate()
        .any(|(i, &b)| b == first && hay.get(i + 1..i + 1 + rest.len()) == Some(rest))
}

/// What sshd's PAM stack does with the module, for the check of sshd's settings.
#[derive(Clone, Copy, Default)]
struct SshdStack {
    loads_module: bool,
    /// No password step before the module: only sshd's own methods keep strangers out.
    code_only: bool,
}

/// Checks every PAM service whose stack loads the module.
fn check_pam(r: &mut Report, pam_dir: &Path, config_args: &[String], euid: u32) -> SshdStack {
    let Ok(entries) = std::fs::read_dir(pam_dir) else {
        r.problem(
            &format!("cannot read {}", pam_dir.display()),
            "give the PAM directory with --pam-dir",
        );
        return SshdStack::default();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let stacks: Vec<(String, Vec<Entry>)> = files
        .iter()
        .filter_map(|f| f.file_name())
        .map(|name| {
            let service = name.to_string_lossy().into_owned();
            let mut stack = Vec::new();
            expand(pam_dir, &service, 0, 0, &mut stack);
            // libpam leaves out a `-auth` line whose module is missing, so jumps do not
            // count it either; one naming pam_ivmfa.so stays, to be reported.
            stack.retain(|e| !e.dash || e.substack || e.named_ivmfa() || module_exists(&e.module));
            (service, stack)
        })
        .collect();
    let mut modules = Modules::new(&stacks);
    let mut sshd = SshdStack::default();
    let mut any = false;
    for (service, stack) in &stacks {
        let ours: Vec<bool> = stack.iter().map(|e| modules.is_ivmfa(e)).collect();
        for i in (0..stack.len()).filter(|&i| ours[i]) {
            any = true;
            let order = check_entry(r, service, stack, &ours, i, config_args, euid);
            if service == "sshd" {
                sshd.loads_module = true;
                sshd.code_only |= order == Order::NoPassword;
            }
        }
    }
    if !any {
        r.note(&format!(
            "no PAM stack in {} loads pam_ivmfa.so yet; see the README",
            pam_dir.display()
        ));
    }
    sshd
}

/// Where libpam goes on after a jump of `n` modules from `from`, and whether the jump was
/// valid: a substack counts as one module, and a jump cannot leave the substack it is in.
fn jump(stack: &[Entry], from: usize, n: usize) -> (usize, bool) {
    let level = stack[from].level;
    let mut h = from;
    let mut left = n;
    while left > 0 && stack.get(h + 1).is_some_and(|e| e.level >= level) {
        h += 1;
        while stack.get(h + 1).is_some_and(|e| e.level > level) {
            h += 1;
        }
        left -= 1;
    }
    (h + 1, left == 0)
}

/// Where libpam goes on after `done` or `die` at `from`: past the rest of the substack
/// `from` is in, or past the end of the stack.
fn leave(stack: &[Entry], from: usize) -> usize {
    let level = stack[from].level;
    let mut h = from;
    while stack.get(h + 1).is_some_and(|e| e.level >= level) {
        h += 1;
    }
    h + 1
}

/// libpam's verdict so far, which decides whether `done` ends anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Impression {
    Undecided,
    Positive,
    Negative,
}

/// One way through the stack to `target` for someone who knows no password: each password
/// module on it failed. The indices and actions of the modules it passes, or `None` when
/// every such way ends first.
fn stranger_path(stack: &[Entry], ours: &[bool], target: usize) -> Option<Vec<(usize, Action)>> {
    struct Walk<'a> {
        stack: &'a [Entry],
        ours: &'a [bool],
        target: usize,
        dead: HashSet<(usize, Impression)>,
        path: Vec<(usize, Action)>,
    }
    impl Walk<'_> {
        fn from(&mut self, at: usize, imp: Impression) -> bool {
            // Modules only ever run forward, so a way past the target never comes back.
            if at == self.target {
                return true;
            }
            if at > self.target || self.dead.contains(&(at, imp)) {
                return false;
            }
            let e = &self.stack[at];
            if e.substack {
                return self.from(at + 1, imp);
            }
            let control = Control::of(&e.control);
            let outcomes = if e.module_name() == "pam_deny.so" {
                vec![control.action("auth_err")]
            } else if e.module_name() == "pam_permit.so" {
                vec![control.action("success")]
            } else if self.ours[at] || e.asks_no_secret() {
                if module_exists(&e.module) {
                    control.any()
                } else {
                    vec![control.action("perm_denied")]
                }
            } else {
                control.on_failure()
            };
            for action in outcomes {
                self.path.push((at, action));
                let next: Vec<(usize, Impression)> = match action {
                    Action::Ignore => vec![(at + 1, imp)],
                    Action::Ok if imp == Impression::Negative => vec![(at + 1, imp)],
                    Action::Ok => vec![(at + 1, Impression::Positive)],
                    Action::Done if imp == Impression::Negative => vec![(at + 1, imp)],
                    Action::Done => vec![(leave(self.stack, at), Impression::Positive)],
                    Action::Bad => vec![(at + 1, Impression::Negative)],
                    Action::Die => vec![(leave(self.stack, at), Impression::Negative)],
                    // Back to the verdict at the start of the substack, which may be any.
                    Action::Reset => [
                        Impression::Undecided,
                        Impression::Positive,
                        Impression::Negative,
                    ]
                    .map(|i| (at + 1, i))
                    .to_vec(),
                    Action::Jump(n) => match jump(self.stack, at, n) {
                        (to, true) => vec![(to, imp)],
                        (to, false) => vec![(to, Impression::Negative)],
                    },
                };
                if next.into_iter().any(|(to, i)| self.from(to, i)) {
                    return true;
                }
                self.path.pop();
            }
            self.dead.insert((at, imp));
            false
        }
    }
    let mut walk = Walk {
        stack,
        ours,
        target,
        dead: HashSet::new(),
        path: Vec::new(),
    };
    walk.from(0, Impression::Undecided).then_some(walk.path)
}

/// Whether `j`'s `done`, `sufficient` or jump acts on the (sub)stack that holds `i`.
fn same_scope(stack: &[Entry], j: usize, i: usize) -> bool {
    let level = stack[j].level;
    level <= stack[i].level && stack[j + 1..i].iter().all(|e| e.level >= level)
}

/// Where pam_ivmfa.so stands in its stack.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// After a password step that ends the stack on failure, with no way round it.
    Fine,
    /// Reported as a problem.
    Wrong,
    /// No password step at all: right only when sshd checks a key first.
    NoPassword,
    /// Before the password step, which takes the password this module hands on
    /// (`forward_pass`).
    Forwarded,
}

fn check_entry(
    r: &mut Report,
    service: &str,
    stack: &[Entry],
    ours: &[bool],
    i: usize,
    config_args: &[String],
    euid: u32,
) -> Order {
    let entry = &stack[i];
    let at = format!("service {service}, {}", entry.at);
    if !entry.named_ivmfa() {
        r.note(&format!(
            "{at}: {} is pam_ivmfa.so under another name; checked as such",
            entry.module
        ));
    }
    match entry.control.to_ascii_lowercase().as_str() {
        "required" | "requisite" => {}
        "optional" => r.problem(
            &format!("{at}: pam_ivmfa.so is optional, so a wrong code does not stop the login"),
            "make it: auth required pam_ivmfa.so",
        ),
        "sufficient" => r.problem(
            &format!(
                "{at}: pam_ivmfa.so is sufficient, so a code alone can end the stack with success"
            ),
            "make it: auth required pam_ivmfa.so, after the password step",
        ),
        other => r.note(&format!(
            "{at}: control {other}; make sure a failure of pam_ivmfa.so denies the login"
        )),
    }
    if entry.dash {
        r.problem(
            &format!(
                "{at}: -auth makes libpam skip pam_ivmfa.so silently when it cannot be loaded"
            ),
            "remove the leading '-'",
        );
    }
    if !module_exists(&entry.module) {
        r.problem(
            &format!("{at}: {} is not installed where libpam looks", entry.module),
            "install it (packaging/install.sh) or give its absolute path",
        );
    }
    let mut args = entry.args.clone();
    if !args.iter().any(|a| a.starts_with("config=")) {
        args.extend(config_args.iter().cloned());
    }
    // The stack is checked even when the options are wrong: they will be fixed, the stack
    // may be forgotten.
    let config = Config::resolve(&args, euid);
    let order = check_order(r, &at, stack, ours, i, config.as_ref().ok());
    match config {
        Ok(config) => {
            if config.unenrolled == Unenrolled::Allow {
                r.note(&format!(
                    "{at}: unenrolled=allow: users who have not enrolled log in with the password alone"
                ));
            }
            if let Some(group) = &config.exempt_group {
                r.note(&format!(
                    "{at}: members of group {group} log in without a code (exempt_group)"
                ));
            }
            if order == Order::Fine {
                r.ok(&format!("{at}: pam_ivmfa.so after the password step"));
            }
        }
        Err(e) => r.problem(
            &format!("{at}: {e}"),
            "fix the options; until then every login is denied",
        ),
    }
    order
}

/// What the modules before `stack[i]` let through to it.
fn check_order(
    r: &mut Report,
    at: &str,
    stack: &[Entry],
    ours: &[bool],
    i: usize,
    config: Option<&Config>,
) -> Order {
    let mut fine = true;
    for j in (0..i).filter(|&j| !stack[j].substack && same_scope(stack, j, i)) {
        let e = &stack[j];
        if e.success_ends_stack() {
            fine = false;
            r.problem(
                &format!(
                    "{at}: a success of {} ({}, {}) ends the stack before pam_ivmfa.so runs",
                    e.module_name(),
                    e.control,
                    e.at
                ),
                "make that module required or requisite, or put pam_ivmfa.so before it",
            );
        } else if e.success_jump().is_some_and(|n| jump(stack, j, n).0 > i) {
            fine = false;
            r.problem(
                &format!(
                    "{at}: {} ({}, {}) jumps past pam_ivmfa.so on success",
                    e.module_name(),
                    e.control,
                    e.at
                ),
                "change the jump so it lands on or before pam_ivmfa.so",
            );
        }
    }

    let is_password = |k: usize| !ours[k] && !stack[k].substack && !stack[k].asks_no_secret();
    let Some(path) = stranger_path(stack, ours, i) else {
        return if fine { Order::Fine } else { Order::Wrong };
    };
    let stake = "so anyone who knows a user name reaches the code prompt: they can file reset \
                 requests, run up the user's failure count and read why a reset was declined";
    let enroll = if config.is_some_and(|c| c.unenrolled == Unenrolled::Enroll) {
        "; with unenrolled=enroll they can also enroll their own phone for a user who has none"
    } else {
        ""
    };
    let show = |k: usize| {
        let e = &stack[k];
        format!("{} ({}, {})", e.module_name(), e.control, e.at)
    };
    let failed: Vec<usize> = path
        .iter()
        .map(|&(k, _)| k)
        .filter(|&k| is_password(k))
        .collect();
    if let Some(&last) = failed.last() {
        let names: Vec<String> = failed.iter().map(|&k| show(k)).collect();
        // Nothing inside a substack can end the stack around it: the file must be included.
        let in_substack = failed.iter().any(|&k| stack[k].level > stack[i].level);
        let (why, fix) = if in_substack {
            (
                ", as it is inside a substack, where even requisite ends only the substack",
                "include the file with @include (or auth include) instead of auth substack, \
                 with its password module requisite or followed by `auth requisite pam_deny.so`"
                    .to_owned(),
            )
        } else {
            (
                "",
                format!(
                    "make {} requisite, or follow it with `auth requisite pam_deny.so` as \
                     Debian's common-auth does",
                    stack[last].module_name()
                ),
            )
        };
        r.problem(
            &format!(
                "{at}: a wrong password at {} does not end the stack{why}, {stake}{enroll}",
                names.join(" and ")
            ),
            &fix,
        );
        return Order::Wrong;
    }
    let before: Vec<usize> = (0..i).filter(|&k| is_password(k)).collect();
    if !before.is_empty() {
        let skipped: Vec<String> = before.iter().map(|&k| show(k)).collect();
        let by = path
            .iter()
            .find(|(k, a)| matches!(a, Action::Jump(_)) && before.iter().any(|p| p > k))
            .map(|&(k, _)| format!(": {} jumps over it", show(k)))
            .unwrap_or_default();
        r.problem(
            &format!(
                "{at}: a way through the stack skips the password step ({}){by}, {stake}{enroll}",
                skipped.join(", ")
            ),
            "change the jumps so that every way to pam_ivmfa.so runs the password module",
        );
        return Order::Wrong;
    }
    if let Some(after) = (i + 1..stack.len()).find(|&k| is_password(k)) {
        if config.is_some_and(|c| c.forward_pass) {
            let next = &stack[after];
            let takes_it = next.args.iter().any(|a| {
                matches!(
                    a.as_str(),
                    "use_first_pass" | "try_first_pass" | "use_authtok"
                )
            });
            if !takes_it {
                r.problem(
                    &format!(
                        "{at}: forward_pass hands the password on, but {} asks for it again",
                        show(after)
                    ),
                    &format!("add use_first_pass to {}", next.module_name()),
                );
                return Order::Wrong;
            }
            r.ok(&format!(
                "{at}: forward_pass: pam_ivmfa.so takes the password and the code in one \
                 answer and hands the password on to {}",
                show(after)
            ));
            r.note(&format!(
                "{at}: forward_pass judges the code before the password: anyone who knows a \
                 user name can run up that user's failure count and back-off"
            ));
            return Order::Forwarded;
        }
        r.problem(
            &format!(
                "{at}: pam_ivmfa.so comes before the password step, {}: its prompt tells \
                 enrolled users from the rest, {stake}{enroll}",
                show(after)
            ),
            "put pam_ivmfa.so after the password module, and make that module requisite",
        );
        return Order::Wrong;
    }
    r.note(&format!(
        "{at}: no password step before pam_ivmfa.so; right only for key + code logins \
         (sshd AuthenticationMethods publickey,keyboard-interactive)"
    ));
    Order::NoPassword
}

/// sshd's settings read as `sshd -T` prints them: lowercase keys, one per line.
fn setting(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// A way sshd's settings let a login past without the code, or to the code prompt without
/// a key. Compared, so that what a Match block adds stands out from the global settings.
#[derive(Debug, PartialEq, Eq)]
enum Gap {
    NoPam,
    NoKbd,
    /// Methods or method lists that log in without keyboard-interactive.
    Bypass(Vec<String>),
    /// Method lists that start with keyboard-interactive, for a stack that asks only for
    /// the code.
    OpenStart(Vec<String>),
}

/// The gaps in one set of effective settings, and its AuthenticationMethods.
fn gaps(text: &str, stack: SshdStack) -> (Vec<Gap>, String) {
    let mut out = Vec::new();
    if setting(text, "usepam") != "yes" {
        out.push(Gap::NoPam);
    }
    if setting(text, "kbdinteractiveauthentication") != "yes" {
        out.push(Gap::NoKbd);
    }
    // Every way in must include keyboard-interactive, where the code is asked.
    let methods = setting(text, "authenticationmethods");
    let any = methods.is_empty() || methods == "any";
    let bypass: Vec<String> = if any {
        [
            ("publickey", setting(text, "pubkeyauthentication") != "no"),
            (
                "gssapi-with-mic",
                setting(text, "gssapiauthentication") == "yes",
            ),
            (
                "hostbased",
                setting(text, "hostbasedauthentication") == "yes",
            ),
        ]
        .into_iter()
        .filter(|&(_, on)| on)
        .map(|(m, _)| m.to_owned())
        .collect()
    } else {
        methods
            .split(' ')
            .filter(|list| {
                !list
                    .split(',')
                    .any(|m| m.starts_with("keyboard-interactive"))
            })
            .map(str::to_owned)
            .collect()
    };
    if !bypass.is_empty() {
        out.push(Gap::Bypass(bypass));
    }
    // With no password in the PAM stack, only a method sshd checks first (a key) keeps
    // strangers from the code prompt.
    if stack.code_only {
        let open: Vec<String> = if any {
            vec!["keyboard-interactive".to_owned()]
        } else {
            methods
                .split(' ')
                .filter(|list| {
                    list.split(',')
                        .next()
                        .is_some_and(|m| m.starts_with("keyboard-interactive"))
                })
                .map(str::to_owned)
                .collect()
        };
        if !open.is_empty() {
            out.push(Gap::OpenStart(open));
        }
    }
    (out, methods)
}

/// `sshd -T`, with `-C spec` when given: the effective settings, or sshd's first line of
/// complaint. `Err(None)`: sshd could not be run at all.
fn effective(sshd: &Path, spec: Option<&str>) -> Result<String, Option<String>> {
    let mut command = Command::new(sshd);
    command.arg("-T");
    if let Some(spec) = spec {
        command.arg("-C").arg(spec);
    }
    let out = command.output().map_err(|_| None)?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| !l.trim().is_empty())
            .map_or_else(
                || format!("exit status {}", out.status.code().unwrap_or(-1)),
                str::to_owned,
            );
        return Err(Some(why));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whose logins sshd's Match blocks are evaluated for.
pub struct Logins {
    /// `None`: every user in the store.
    pub users: Option<Vec<UserName>>,
    /// Empty: [`DEFAULT_FROM`].
    pub from: Vec<IpAddr>,
}

/// Where a login is taken to come from when `--from` is not given: an address that stands
/// for any remote host (TEST-NET-1, RFC 5737, which no real Match block names) and the
/// loopback address, which blocks that exempt local logins name.
pub const DEFAULT_FROM: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    IpAddr::V4(Ipv4Addr::LOCALHOST),
];

fn check_sshd(
    r: &mut Report,
    sshd: &Path,
    stack: SshdStack,
    users: &[UserName],
    logins: &Logins,
    nobody: &str,
) {
    let text = match effective(sshd, None) {
        Ok(text) => Some(text),
        Err(None) => {
            r.note(&format!(
                "{} not found; sshd settings not checked",
                sshd.display()
            ));
            return;
        }
        Err(Some(why)) => {
            if stack.loads_module {
                r.problem(
                    &format!("cannot read sshd's effective settings (sshd -T: {why}); a login may skip the code unnoticed"),
                    "fix what sshd -T reports, then run check again",
                );
            }
            None
        }
    };
    if !stack.loads_module {
        r.note("the sshd PAM stack does not load pam_ivmfa.so; SSH logins ask for no code");
        return;
    }
    let Some(text) = text else {
        return;
    };
    let (global, methods) = gaps(&text, stack);
    for gap in &global {
        let (what, fix) = match gap {
            Gap::NoPam => (
                "sshd has UsePAM no, so it never asks for the code".to_owned(),
                "set UsePAM yes in sshd_config",
            ),
            Gap::NoKbd => (
                "sshd has KbdInteractiveAuthentication no, so it cannot show the code prompt"
                    .to_owned(),
                "set KbdInteractiveAuthentication yes in sshd_config",
            ),
            Gap::Bypass(ways) => (
                format!(
                    "sshd lets users in without a code through: {}",
                    ways.join(", ")
                ),
                "set AuthenticationMethods publickey,keyboard-interactive keyboard-interactive \
                 (every list must contain keyboard-interactive)",
            ),
            Gap::OpenStart(lists) => (
                format!(
                    "sshd's PAM stack asks for no password before the code, and sshd lets a \
                     login start with {}, so anyone who knows a user name reaches the code \
                     prompt",
                    lists.join(" or ")
                ),
                "set AuthenticationMethods publickey,keyboard-interactive, or put the password \
                 step before pam_ivmfa.so in /etc/pam.d/sshd",
            ),
        };
        r.problem(&what, fix);
    }
    if global.is_empty() {
        r.ok(&format!(
            "sshd: UsePAM and keyboard-interactive on; AuthenticationMethods {methods}"
        ));
    }
    check_match_blocks(r, sshd, stack, &global, users, logins, nobody);
}

/// `sshd -T` alone leaves out Match blocks; `-C` applies those that fit one login. Each user
/// is evaluated from each address, and what a block adds to the global gaps is reported.
fn check_match_blocks(
    r: &mut Report,
    sshd: &Path,
    stack: SshdStack,
    global: &[Gap],
    users: &[UserName],
    logins: &Logins,
    nobody: &str,
) {
    if users.is_empty() {
        r.note(&format!(
            "{nobody}, so sshd's Match blocks were evaluated for no one; name a user with \
             check --user NAME"
        ));
        return;
    }
    let from: &[IpAddr] = if logins.from.is_empty() {
        &DEFAULT_FROM
    } else {
        &logins.from
    };
    if logins.from.is_empty() && sshd_config_matches_address() {
        r.note(&format!(
            "sshd_config has Match Address blocks, and logins were evaluated from {} only; \
             evaluate the networks they name with --from ADDR",
            list(from)
        ));
    }
    for user in users {
        let mut required = Vec::new();
        for addr in from {
            // Neither a user name (UserName admits no ',' or '=') nor an address can add
            // a key to the spec. With UseDNS no, sshd's default, the host is the address.
            let spec = format!("user={user},host={addr},addr={addr}");
            let text = match effective(sshd, Some(&spec)) {
                Ok(text) => text,
                Err(why) => {
                    // Refused once, refused for everyone: one problem says it.
                    return r.problem(
                        &format!(
                            "cannot evaluate sshd's Match blocks (sshd -T -C {spec}: {}); one \
                             may let a login skip the code unnoticed",
                            why.unwrap_or_else(|| "cannot run it".to_owned())
                        ),
                        "fix what sshd reports; if it wants laddr or lport (a Match \
                         LocalAddress or LocalPort block), run sshd -T -C with them added, for \
                         each address and port sshd listens on",
                    );
                }
            };
            let added: Vec<Gap> = gaps(&text, stack)
                .0
                .into_iter()
                .filter(|g| !global.contains(g))
                .collect();
            if added.is_empty() {
                required.push(*addr);
            }
            let at = format!("{user} from {addr}");
            let verify = format!("; sshd -T -C {spec} shows the result");
            for gap in added {
                let (what, fix) = match gap {
                    Gap::NoPam => (
                        format!("{at}: sshd has UsePAM no, so it never asks for the code"),
                        "set UsePAM yes in sshd_config".to_owned(),
                    ),
                    Gap::NoKbd => (
                        format!(
                            "{at}: a Match block sets KbdInteractiveAuthentication no, so sshd \
                             cannot show the code prompt"
                        ),
                        format!(
                            "remove KbdInteractiveAuthentication no from the Match block that \
                             applies{verify}"
                        ),
                    ),
                    Gap::Bypass(ways) => (
                        format!(
                            "{at}: a Match block lets the user in without a code through: {}; \
                             the code is never asked",
                            ways.join(", ")
                        ),
                        format!(
                            "in the Match block that applies, set AuthenticationMethods \
                             publickey,keyboard-interactive (every list must contain \
                             keyboard-interactive){verify}"
                        ),
                    ),
                    Gap::OpenStart(lists) => (
                        format!(
                            "{at}: a Match block lets a login start with {}, and sshd's PAM \
                             stack asks for no password before the code, so anyone who knows \
                             the user name reaches the code prompt",
                            lists.join(" or ")
                        ),
                        format!(
                            "in the Match block that applies, set AuthenticationMethods \
                             publickey,keyboard-interactive{verify}"
                        ),
                    ),
                };
                r.problem(&what, &fix);
            }
        }
        if global.is_empty() && !required.is_empty() {
            r.ok(&format!(
                "{user} from {}: keyboard-interactive required",
                list(&required)
            ));
        }
    }
}

/// `a`, `a and b`, `a, b and c`.
fn list(addrs: &[IpAddr]) -> String {
    let words: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
    match words.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => words.join(""),
    }
}

/// Whether the system's sshd_config, or a file Debian's includes, has a Match block on the
/// client's address: those the default addresses may miss.
fn sshd_config_matches_address() -> bool {
    let mut files = vec![PathBuf::from("/etc/ssh/sshd_config")];
    if let Ok(dir) = std::fs::read_dir("/etc/ssh/sshd_config.d") {
        files.extend(
            dir.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "conf")),
        );
    }
    files.iter().any(|file| {
        std::fs::read_to_string(file).is_ok_and(|text| {
            text.lines().any(|line| {
                let mut words = line.split_whitespace();
                words
                    .next()
                    .is_some_and(|w| w.eq_ignore_ascii_case("match"))
                    && words.any(|w| w.eq_ignore_ascii_case("address"))
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stack from pam.conf lines; `>` before a line puts it one substack deeper.
    fn stack(lines: &[&str]) -> Vec<Entry> {
        lines
            .iter()
            .map(|l| {
                let level = l.chars().take_while(|&c| c == '>').count();
                let l = &l[level..];
                let (control, module) = if l.starts_with('[') {
                    let (c, m) = l.split_once("] ").unwrap();
                    (format!("{c}]"), m)
                } else {
                    l.split_once(' ').map(|(c, m)| (c.to_owned(), m)).unwrap()
                };
                Entry {
                    at: l.to_owned(),
                    substack: control == "substack",
                    control,
                    module: module.to_owned(),
                    args: vec![],
                    dash: false,
                    level,
                }
            })
            .collect()
    }

    fn ours(s: &[Entry]) -> Vec<bool> {
        s.iter().map(Entry::named_ivmfa).collect()
    }

    #[test]
    fn a_jump_counts_a_substack_as_one_module() {
        let s = stack(&[
            "[success=1 default=ignore] pam_unix.so",
            "substack other",
            ">requisite pam_sss.so",
            ">required pam_permit.so",
            "required pam_ivmfa.so",
        ]);
        assert_eq!(jump(&s, 0, 1), (4, true));
        assert_eq!(jump(&s, 0, 5), (5, false));
        // Nor can a jump leave its substack.
        assert_eq!(jump(&s, 2, 2), (4, false));
    }

    #[test]
    fn die_ends_only_the_substack_it_is_in() {
        let included = stack(&[
            "[success=1 default=ignore] pam_unix.so",
            "requisite pam_deny.so",
            "required pam_permit.so",
            "required pam_ivmfa.so",
        ]);
        assert!(stranger_path(&included, &ours(&included), 3).is_none());
        let substack = stack(&[
            "substack common-auth",
            ">[success=1 default=ignore] pam_unix.so",
            ">requisite pam_deny.so",
            ">required pam_permit.so",
            "required pam_ivmfa.so",
        ]);
        let path = stranger_path(&substack, &ours(&substack), 4).unwrap();
        assert_eq!(path, vec![(1, Action::Ignore), (2, Action::Die)]);
    }

    #[test]
    fn done_after_a_failure_does_not_end_the_stack() {
        // libpam: `done` ends the stack only while the verdict so far is positive.
        let s = stack(&[
            "required pam_unix.so",
            "sufficient pam_permit.so",
            "required pam_ivmfa.so",
        ]);
        let path = stranger_path(&s, &ours(&s), 2).unwrap();
        assert_eq!(path, vec![(0, Action::Bad), (1, Action::Done)]);
    }

    #[test]
    fn a_user_name_cannot_add_a_key_to_the_connection_spec() {
        // The -C spec is built from UserName without escaping.
        for name in ["a,addr=10.0.0.1", "a=b", "a b", "a\tb"] {
            assert!(UserName::parse(name).is_none(), "{name}");
        }
    }

    #[test]
    fn a_match_block_adds_gaps_that_the_global_settings_lack() {
        let key_first = SshdStack {
            loads_module: true,
            code_only: true,
        };
        let global = "usepam yes\nkbdinteractiveauthentication yes\n\
                      authenticationmethods publickey,keyboard-interactive";
        assert_eq!(gaps(global, key_first).0, []);
        let block = format!("authenticationmethods keyboard-interactive password\n{global}");
        assert_eq!(
            gaps(&block, key_first).0,
            [
                Gap::Bypass(vec!["password".into()]),
                Gap::OpenStart(vec!["keyboard-interactive".into()])
            ]
        );
    }

    #[test]
    fn addresses_read_as_a_list() {
        assert_eq!(list(&DEFAULT_FROM), "192.0.2.1 and 127.0.0.1");
        assert_eq!(list(&DEFAULT_FROM[..1]), "192.0.2.1");
        let three = [DEFAULT_FROM[0], DEFAULT_FROM[1], "::1".parse().unwrap()];
        assert_eq!(list(&three), "192.0.2.1, 127.0.0.1 and ::1");
    }
}
