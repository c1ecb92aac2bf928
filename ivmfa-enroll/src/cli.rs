//! The command line: every command, option and example that `--help` shows.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "ivmfa-enroll",
    version,
    about = "Set up and manage multi-factor authentication (TOTP codes) for Linux logins",
    long_about = "Set up and manage multi-factor authentication for Linux logins.\n\n\
        pam_ivmfa.so asks for the six-digit code from an authenticator app after the password; \
        this tool creates each user's secret, shows it as a QR code to scan, and handles the \
        administrators' side. Run it as root (or through sudo).\n\n\
        With backend = \"postgres\" in ivmfa.toml the commands act on the fleet database \
        instead of the local store, as your own database role (--db-user, default your login \
        name; under sudo, the name of the user who ran sudo), authenticated by your client \
        certificate (--db-cert, --db-key) or by a password from PGPASSFILE or ~/.pgpass. Root \
        is then not needed, except where a command says so. The db commands set the database \
        up.",
    after_help = "Examples:\n  \
        sudo ivmfa-enroll enroll alice          set up alice (QR code, confirm, recovery codes)\n  \
        sudo ivmfa-enroll status                list enrolled users\n  \
        sudo ivmfa-enroll check                 find problems in config, store, PAM and sshd\n  \
        ivmfa-enroll --db-user alice status bob   the fleet database, as the role alice\n\n\
        Exit status: 0 done, 1 failed or problems found, 2 usage error, 3 refused."
)]
pub struct Cli {
    /// Config file (same keys as the PAM module's options)
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Root of the store, overriding the config file
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Fleet database role to act as [default: your login name; under sudo, the name of the
    /// user who ran sudo]
    #[arg(long, global = true, value_name = "ROLE")]
    pub db_user: Option<String>,
    /// Your client certificate (PEM) for the fleet database, owned by you; without it, the
    /// password for the role comes from PGPASSFILE or ~/.pgpass
    #[arg(long, global = true, value_name = "FILE", requires = "db_key")]
    pub db_cert: Option<PathBuf>,
    /// The private key of --db-cert (PEM), owned by you, mode 0600
    #[arg(long, global = true, value_name = "FILE", requires = "db_cert")]
    pub db_key: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a user's secret, show it as a QR code, confirm it with a code from the app
    #[command(after_help = "Examples:\n  \
        sudo ivmfa-enroll enroll alice\n      \
            QR code in the terminal, then type the code the app shows; prints recovery codes\n  \
        sudo ivmfa-enroll enroll alice --qr none --qr-png /root/alice.png\n      \
            no picture in the terminal; write a PNG to hand over instead\n  \
        sudo ivmfa-enroll enroll alice --force\n      \
            replace alice's enrollment (the old one is archived)\n  \
        printf '%s\\n' \"$KEY\" | sudo ivmfa-enroll enroll bob --secret-file - --no-confirm\n      \
            provision a known key (migration), kept out of ps and sudo's log\n  \
        sudo ivmfa-enroll enroll carol --hotp --hex --secret-file /root/token.hex\n      \
            a hardware token (HOTP) with the key its vendor gave in hex; press its button\n      \
            when asked for a code\n\n\
        A hardware token's key comes with it (or was programmed into it): --hotp needs \
        --secret-file (or --secret). Without --no-confirm, one code from the token, up to \
        hotp_window presses after its first, confirms it; a token used before is further on: \
        enroll it with --no-confirm, then ivmfa-enroll resync.")]
    Enroll(EnrollArgs),
    /// Show whether users are enrolled, recovery codes left and any back-off
    #[command(after_help = "Examples:\n  \
        sudo ivmfa-enroll status          every user in the store\n  \
        sudo ivmfa-enroll status alice    one user in detail\n\n\
        Exit status 1 if USER is no user in the user database.")]
    Status {
        /// User to show; all users in the store if omitted
        user: Option<String>,
    },
    /// Remove a user's enrollment (it is archived under <store>/archive, not destroyed)
    #[command(after_help = "Example:\n  sudo ivmfa-enroll remove alice")]
    Remove { user: String },
    /// Issue a new set of recovery codes; the old set stops working
    #[command(after_help = "Example:\n  sudo ivmfa-enroll recovery-codes alice")]
    RecoveryCodes {
        user: String,
        /// How many codes
        #[arg(long, default_value_t = ivmfa_core::recovery::DEFAULT_COUNT, value_name = "N",
              value_parser = recovery_count)]
        count: usize,
    },
    /// Take over a user's ~/.google_authenticator (TOTP secret, window, scratch codes)
    #[command(after_help = "Examples:\n  \
        sudo ivmfa-enroll import-google-authenticator alice\n  \
        sudo ivmfa-enroll import-google-authenticator alice --file /backup/alice.ga\n\n\
        The user keeps the account already in their phone; scratch codes become recovery \
        codes. The file is left in place: remove it, and pam_google_authenticator from the \
        PAM stack, once logins with pam_ivmfa work.")]
    ImportGoogleAuthenticator {
        user: String,
        /// File to import instead of the user's ~/.google_authenticator
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Replace an existing enrollment (the old one is archived)
        #[arg(long)]
        force: bool,
    },
    /// Set a hardware token's counter from two consecutive codes, when it ran past the window
    #[command(after_help = "Example:\n  \
        sudo ivmfa-enroll resync carol 328482 906128\n      \
            press the button twice and give both codes, in order\n\n\
        The two codes must follow each other within 1000 presses after the counter the \
        server expects; the counter then goes on after the second. Codes before the counter \
        are never searched, so used codes stay used; the two codes given are used up too, so \
        seeing them in ps or sudo's log is no use to anyone. For hardware tokens (HOTP) only: \
        a phone's time-based codes need its clock right instead.")]
    Resync {
        user: String,
        /// The code the token showed first
        #[arg(value_name = "CODE1")]
        first: String,
        /// The code it showed at the next press
        #[arg(value_name = "CODE2")]
        second: String,
    },
    /// Take over a user's token from a pam_oath usersfile (HOTP and TOTP lines, counters)
    #[command(after_help = "Examples:\n  \
        sudo ivmfa-enroll import-oath carol --file /etc/users.oath\n  \
        sudo ivmfa-enroll import-oath carol --file /etc/users.oath --force\n\n\
        Reads the user's one line: HOTP, HOTP/E and HOTP/E/6 to /8 (a hardware token, with its \
        counter: the code pam_oath last accepted stays used), HOTP/T30 and HOTP/T60 with an \
        optional /6 to /8 (an app, time-based). The file must be owned by root and not writable by group or \
        others. A line with a PIN in its password field is refused (ivmfa relies on the \
        account's password instead): put - in its place in a copy of the file. pam_oath has \
        no recovery codes; issue some with ivmfa-enroll recovery-codes. The file is left in \
        place: remove the line, and pam_oath from the PAM stack, once logins with pam_ivmfa \
        work.")]
    ImportOath {
        user: String,
        /// The usersfile (pam_oath's usersfile= option)
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
        /// Replace an existing enrollment (the old one is archived)
        #[arg(long)]
        force: bool,
    },
    /// Handle lost-device requests: list them, approve (new set-up at next login) or deny
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        sudo ivmfa-enroll reset list\n  \
        sudo ivmfa-enroll reset approve alice\n  \
        ivmfa-enroll reset approve alice --host host_web2\n      \
            fleet database: the new code is set up through that host\n  \
        sudo ivmfa-enroll reset deny alice --reason \"Call the service desk first\"\n  \
        sudo ivmfa-enroll reset watch --exec /usr/local/sbin/mfa-ticket\n      \
            fleet database: run a program for every new request"
    )]
    Reset(ResetAction),
    /// Set up the fleet database (backend = "postgres"): its schema, hosts, a file store's
    /// users, the fence after a failover, the audit's size
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        ivmfa-enroll --db-user postgres db install\n      \
            create the database and the schema, as a role that may (a superuser)\n  \
        ivmfa-enroll --db-user postgres db add-host host_web1 --address 10.0.1.21\n      \
            the host's role; prints its pg_hba line, certificate and ivmfa.toml\n  \
        sudo ivmfa-enroll db migrate --from /var/lib/ivmfa\n      \
            this machine's store into the fleet\n  \
        ivmfa-enroll db fence\n      \
            after a failover: no code used before it works again\n  \
        ivmfa-enroll db prune-audit --keep-days 365\n      \
            forget the audit rows older than a year\n\n\
        These act on the database the config's db_addresses and db_name name, over TLS \
        verified against db_ca, as --db-user (see ivmfa-enroll --help)."
    )]
    Db(DbAction),
    /// Check config, store permissions, PAM stacks and sshd settings; say what to fix
    #[command(after_help = "Examples:\n  \
        sudo ivmfa-enroll check\n  \
        sudo ivmfa-enroll check --pam-dir /mnt/etc/pam.d --sshd /usr/sbin/sshd\n  \
        sudo ivmfa-enroll check --user alice --from 10.1.2.3 --from 192.0.2.1\n      \
            apply sshd's Match blocks to alice logging in from each of these addresses\n\n\
        Every PAM service that loads pam_ivmfa.so is checked, whatever name the stack gives \
        it (a symlink, a hard link or a copy, a relative or absolute path). The code prompt \
        must be reachable only by someone who knows the password, whatever unenrolled is: \
        check reports a password step that a wrong password gets past (required, optional or \
        sufficient instead of requisite, a jump round it, a substack), pam_ivmfa.so placed \
        before the password step, and a module that ends the stack before pam_ivmfa.so \
        runs. An sshd stack without a password step (key + code) needs sshd to check a key \
        first: check reports AuthenticationMethods that let a login start with \
        keyboard-interactive.\n\n\
        sshd -T alone leaves out sshd_config's Match blocks, so check also runs \
        sshd -T -C user=USER,host=ADDR,addr=ADDR for every user in the store (or each --user) \
        from each --from address (default 192.0.2.1, standing for any remote host, and \
        127.0.0.1), and reports a Match block that lets that login in without the code. \
        Blocks on other addresses (a LAN, a VPN) are evaluated only when --from names one of \
        them.\n\n\
        With backend = \"postgres\", check connects as this host does (its db_user, \
        db_cert and db_key or db_password_file, over TLS verified against db_ca), reads the \
        schema version, and tries to read every table of the schema as the host: each must \
        be refused.\n\n\
        Exit status 0 when nothing is wrong, 1 when something is.")]
    Check {
        /// Directory of PAM service files
        #[arg(long, default_value = "/etc/pam.d", value_name = "DIR")]
        pam_dir: PathBuf,
        /// sshd binary to ask for its effective settings (sshd -T)
        #[arg(long, default_value = "/usr/sbin/sshd", value_name = "PATH")]
        sshd: PathBuf,
        /// Apply sshd's Match blocks to this user's logins (repeatable) [default: every user
        /// in the store]
        #[arg(long = "user", value_name = "USER")]
        users: Vec<String>,
        /// Apply sshd's Match blocks to logins from this IP address (repeatable) [default:
        /// 192.0.2.1 and 127.0.0.1]
        #[arg(long = "from", value_name = "ADDR")]
        from: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ResetAction {
    /// Show pending requests: who, when, from where, how long ago
    #[command(after_help = "Example:\n  sudo ivmfa-enroll reset list")]
    List,
    /// Archive the user's secret and let the next login set up a new one (within
    /// ticket_lifetime_hours, default 72)
    #[command(after_help = "Examples:\n  \
        sudo ivmfa-enroll reset approve alice\n  \
        ivmfa-enroll reset approve alice --host host_web2\n      \
            fleet database: alice sets up the new code through host_web2\n\n\
        With the fleet database the new code is set up only at a login through one host: \
        the one the request came through (reset list shows it), or the host role --host \
        names. That host shows the new key, so it learns it; no other host may take the \
        approval, and logins through them are told to log in on the one named. Without a \
        pending request, approving a user whose approved reset is still open or has run out \
        issues it again, with a new lifetime, for --host or the host it was for.")]
    Approve {
        user: String,
        /// Fleet database only: the host role (its db_user) through which the user sets up
        /// the new code [default: the one the request came through]
        #[arg(long, value_name = "ROLE")]
        host: Option<String>,
    },
    /// Keep the user's secret; the next login shows the reason once
    #[command(after_help = "Example:\n  \
        sudo ivmfa-enroll reset deny alice --reason \"Call the service desk to confirm who you are\"")]
    Deny {
        user: String,
        /// Shown to the user at the next login
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Fleet database only: wait for new requests and run PROGRAM once for each, as root,
    /// with the environment of notify_command; runs until interrupted
    #[command(after_help = "Example:\n  \
        sudo ivmfa-enroll reset watch --exec /usr/local/sbin/mfa-ticket\n\n\
        PROGRAM gets IVMFA_USER, IVMFA_TIME, IVMFA_SERVICE, IVMFA_RHOST and IVMFA_TTY as the \
        module's notify_command does, and IVMFA_HOST, the role of the host the request came \
        through; it runs as root with nothing else of the caller's, and is killed after \
        notify_timeout_seconds. It must be an absolute path that only root can have written. \
        Requests pending when the watch starts are handled too, so a watch that restarts tells \
        of them again.\n\n\
        The watch LISTENs on the channel ivmfa_reset and reads the pending requests whenever \
        it is told, and every --poll seconds besides (a notification carries nothing; any \
        role that may connect can send one). A lost connection is made again, waiting 1, 2, \
        4 ... up to 60 seconds between tries; if the first one fails, the watch ends with \
        the reason (exit status 1).")]
    Watch {
        /// The program to run for each new request (absolute path, no arguments)
        #[arg(long, value_name = "PROGRAM")]
        exec: PathBuf,
        /// Also read the pending requests every N seconds without a notification
        #[arg(long, default_value_t = 60, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        poll: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum DbAction {
    /// Create the database (if missing) and install the schema; refused where it is installed
    #[command(after_help = "Example:\n  \
        ivmfa-enroll --db-user postgres db install\n\n\
        Needs a role that may create roles, databases and extensions (a superuser), \
        connecting like any other over TLS to db_addresses: give it a line in ~/.pgpass or a \
        client certificate. The database db_name is created (UTF8) when missing, by \
        connecting to the database postgres. The schema is the one built into this version \
        of ivmfa-enroll, in one transaction: all or nothing. It makes the group roles \
        ivmfa_owner, ivmfa_host and ivmfa_admin (no login), the schemas ivmfa and \
        ivmfa_api, and pgcrypto inside ivmfa; PUBLIC loses CONNECT and TEMP on the \
        database. Refused on a database that has the schema already: see db upgrade.")]
    Install,
    /// Bring the schema to the version this ivmfa-enroll knows, one upgrade after another
    #[command(after_help = "Example:\n  \
        ivmfa-enroll --db-user postgres db upgrade\n\n\
        Reads the installed version (ivmfa_api.schema_version()): the same as this tool's, \
        nothing to do; older, the upgrades to each following version are applied in order, \
        each in one transaction; newer, refused (install the newer ivmfa-enroll). Upgrade the \
        database before the hosts' ivmfa: a host refuses a schema version it does not know.")]
    Upgrade,
    /// Create a host's login role (in group ivmfa_host); print its pg_hba line, how to issue
    /// its certificate and its ivmfa.toml lines
    #[command(
        name = "add-host",
        after_help = "Examples:\n  \
        ivmfa-enroll --db-user postgres db add-host host_web1 --address 10.0.1.21\n  \
        sudo ivmfa-enroll --db-user postgres db add-host host_web2 \\\n      \
            --password-file /root/host_web2.password\n      \
            a password instead of a certificate: written to the file (root, 0600), to be \
            copied to the host's /etc/ivmfa\n\n\
        Needs a role that may create roles (CREATEROLE, or a superuser). NAME is the role, \
        and the common name of the host's client certificate: lower-case letters, digits \
        and _, starting with a letter. Nothing is written on the database server: add the \
        pg_hba.conf line printed there yourself, and reload it."
    )]
    AddHost {
        /// The host's role: lower-case letters, digits and _, starting with a letter
        name: String,
        /// The host's IP address, for its pg_hba.conf line [default: a placeholder]
        #[arg(long, value_name = "IP")]
        address: Option<String>,
        /// Authenticate the host by a random password, written to FILE (root, 0600; the
        /// file must not exist), instead of a client certificate; needs root
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Copy every user of a file store into the fleet database: keys, recovery codes, used
    /// codes, watermarks, token counters, failure counts
    #[command(after_help = "Examples:\n  \
        sudo ivmfa-enroll db migrate --from /var/lib/ivmfa\n  \
        sudo ivmfa-enroll db migrate --from /srv/old-host-store --replace\n\n\
        Needs root (the store is root's). Each user is imported under the store's lock, so no \
        login on this host changes the user meanwhile. What the database has already is \
        never lowered: the higher watermark, every refused step, the higher failure counts \
        and token counter, so migrating the stores of several hosts one after another keeps \
        every code any of them saw used, and a user backing off on any of them still backs \
        off. A user enrolled in the database already keeps that key (only the state is \
        merged) unless --replace. An enrollment made for another uid than the account's now \
        (a reused name) is skipped, as logins here skip it. Switch the host to backend = \
        \"postgres\" right after; running db migrate again then picks up what was used \
        meanwhile.\n\n\
        Exit status 1 if any user could not be imported.")]
    Migrate {
        /// The file store to read (its root, as the store key names it)
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// Replace the key and recovery codes of users the database has already
        #[arg(long)]
        replace: bool,
    },
    /// After a failover: raise every user's watermark to now plus the window, so no code
    /// accepted before it (and perhaps lost with the old primary) works again
    #[command(after_help = "Example:\n  \
        ivmfa-enroll db fence\n\n\
        With asynchronous replication a code accepted on the old primary whose commit had not \
        reached the standby would be accepted again after promotion. Users wait at most \
        window + 1 steps for a fresh code. Hardware tokens' counters are left as they are \
        (see SCHEMA.md). Run it from the promotion hook (Patroni's on_role_change), or use \
        synchronous replication (synchronous_mode_strict), which needs no fence.")]
    Fence,
    /// Forget the database's audit rows older than a number of days
    #[command(
        name = "prune-audit",
        after_help = "Examples:\n  \
        ivmfa-enroll db prune-audit --keep-days 365\n  \
        0 3 * * 0 root ivmfa-enroll db prune-audit --keep-days 90\n      \
            an /etc/cron.d line: every Sunday at 03:00\n\n\
        Every call of the host API is an audit row, refused ones too, so the table grows \
        with every login and every guess. The prune is itself an audit row, naming the \
        administrator's role and how many rows went. Keep what your retention rules ask for."
    )]
    PruneAudit {
        /// Keep the rows of the last N days (1 to 3650); older ones are deleted
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=3650))]
        keep_days: u32,
    },
}

#[derive(Args, Debug)]
pub struct EnrollArgs {
    /// User to enroll; the user who ran sudo if omitted
    pub user: Option<String>,
    /// Replace an existing enrollment (the old one is archived)
    #[arg(long)]
    pub force: bool,
    /// How to draw the QR code in the terminal
    #[arg(long, value_enum, default_value_t = QrStyle::Utf8)]
    pub qr: QrStyle,
    /// Also write the QR code as a PNG image (mode 0600; the file must not exist)
    #[arg(long, value_name = "FILE")]
    pub qr_png: Option<PathBuf>,
    /// Also write the QR code as an SVG image (mode 0600; the file must not exist)
    #[arg(long, value_name = "FILE")]
    pub qr_svg: Option<PathBuf>,
    /// Issuer name shown in the app [default: config key issuer, else the host name]
    #[arg(long, value_name = "NAME")]
    pub issuer: Option<String>,
    /// Use this base32 key instead of a new random one. Other users see it in ps and /proc
    /// while the command runs, and sudo logs the whole command line: prefer --secret-file -
    #[arg(long, value_name = "BASE32", conflicts_with = "secret_file")]
    pub secret: Option<String>,
    /// Read the key (base32, or hex with --hex) from the first line of FILE, or of standard
    /// input for '-' (kept out of ps, /proc and sudo's log)
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Save without asking for a code from the app (for provisioning known keys)
    #[arg(long)]
    pub no_confirm: bool,
    /// A hardware token with a counter (HOTP, RFC 4226) instead of a time-based app; its key
    /// comes from --secret-file or --secret, and no QR code is shown
    #[arg(long, conflicts_with_all = ["qr_png", "qr_svg", "issuer"])]
    pub hotp: bool,
    /// The key is hex (as token vendors and pam_oath give it), not base32
    #[arg(long, requires = "hotp")]
    pub hex: bool,
    /// How many recovery codes to issue
    #[arg(long, default_value_t = ivmfa_core::recovery::DEFAULT_COUNT, value_name = "N",
          value_parser = recovery_count)]
    pub recovery_codes: usize,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QrStyle {
    /// Unicode half blocks, forced black on white (scans on dark and light themes)
    Utf8,
    /// ANSI colours and spaces only, for terminals without Unicode (needs twice the width)
    Ansi,
    /// No picture; the URI and the key only
    None,
}

/// A number of recovery codes: 1 to [`ivmfa_core::recovery::MAX_COUNT`], refused when the
/// command line is read, before anything is shown or saved.
fn recovery_count(text: &str) -> Result<usize, String> {
    let max = ivmfa_core::recovery::MAX_COUNT;
    match text.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be 1 to {max} (the default of 10 suits most people)"
        )),
    }
}
