//! Driving a program through a pseudo-terminal like a person: `script(1)` gives it a real
//! terminal of a chosen width, we read the screen and type into it.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub struct Terminal {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Receiver<Vec<u8>>,
    /// Everything shown so far, escapes included.
    pub screen: String,
    /// The start of a character whose other bytes are still to come.
    partial: Vec<u8>,
    /// Where [`Terminal::expect_next`] looks from: the end of what it last found.
    seen: usize,
}

fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

impl Terminal {
    pub fn spawn(columns: u16, program: &Path, args: &[String]) -> Terminal {
        let mut command = format!(
            "stty cols {columns} rows 60; exec {}",
            quote(&program.display().to_string())
        );
        for a in args {
            command.push(' ');
            command.push_str(&quote(a));
        }
        let mut child = Command::new("script")
            .args(["-q", "-e", "-f", "-c", &command, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("script(1) from bsdutils is needed for terminal tests");
        let mut out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            stdin: child.stdin.take(),
            child,
            output: rx,
            screen: String::new(),
            partial: Vec::new(),
            seen: 0,
        }
    }

    fn pump(&mut self, wait: Duration) -> bool {
        match self.output.recv_timeout(wait) {
            Ok(bytes) => {
                // A read may end inside a character (a QR block is three bytes): decode only
                // whole characters, and keep the rest for the next read.
                self.partial.extend_from_slice(&bytes);
                let whole = match std::str::from_utf8(&self.partial) {
                    Err(e) if e.error_len().is_none() => e.valid_up_to(),
                    _ => self.partial.len(),
                };
                let text: Vec<u8> = self.partial.drain(..whole).collect();
                self.screen.push_str(&String::from_utf8_lossy(&text));
                true
            }
            Err(_) => false,
        }
    }

    /// Runs the shell commands `setup` and then `command` in a private mount namespace (so a
    /// private system's bind mounts never touch the machine) on an 80-column terminal.
    pub fn in_namespace(setup: &str, command: &str) -> Terminal {
        Terminal::spawn(
            80,
            Path::new("/usr/bin/unshare"),
            &[
                "-m".into(),
                "--propagation".into(),
                "private".into(),
                "sh".into(),
                "-ec".into(),
                format!("{setup}\nexec {command}"),
            ],
        )
    }

    /// Waits until the screen shows `text` (10 s at most).
    #[track_caller]
    pub fn expect(&mut self, text: &str) -> &str {
        self.expect_any(&[text]);
        &self.screen
    }

    /// Waits until the screen shows one of `texts` (10 s at most); returns which.
    #[track_caller]
    pub fn expect_any(&mut self, texts: &[&str]) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(i) = texts.iter().position(|t| self.screen.contains(t)) {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "waited 10 s for one of {texts:?}; the screen shows:\n{}",
                self.screen
            );
            self.pump(Duration::from_millis(100));
        }
    }

    /// Waits until `text` shows after what this last found (10 s at most). For a prompt that
    /// comes back, which [`Terminal::expect`] would find at its first showing; returns where
    /// it begins in the screen.
    #[track_caller]
    pub fn expect_next(&mut self, text: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(at) = self.screen[self.seen..].find(text) {
                let start = self.seen + at;
                self.seen = start + text.len();
                return start;
            }
            assert!(
                Instant::now() < deadline,
                "waited 10 s for {text:?} past byte {}; the screen shows:\n{}",
                self.seen,
                self.screen
            );
            self.pump(Duration::from_millis(100));
        }
    }

    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(format!("{line}\r").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Ends the input (as Ctrl-D would), waits for the program to end (20 s at most, then
    /// kills it and fails); returns its exit status and the whole screen.
    #[track_caller]
    pub fn finish(mut self) -> (i32, String) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the program did not end; the screen shows:\n{}",
                    self.screen
                );
            }
            self.pump(Duration::from_millis(50));
        };
        while self.pump(Duration::from_millis(200)) {}
        (
            status.code().unwrap_or(-1),
            std::mem::take(&mut self.screen),
        )
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes ANSI escape sequences and carriage returns.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}
