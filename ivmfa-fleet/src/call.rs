//! One call of the host API as a statement: `SELECT * FROM ivmfa_api.f($1, ...)` with typed
//! parameters (never `SELECT (f(...)).*`, which runs `f` once per column).
//!
//! A round's first call also carries the check every connection makes ([`CHECK_COLUMNS`]),
//! so that it costs no round trip of its own: the check is computed first, in the same
//! statement, and the call's first argument (the user, or the attempt) is withheld, NULL,
//! unless the check passes. On a standby, behind a pooler that runs the session as another
//! role, or on a schema this client does not know, the function is then called for nobody:
//! it finds no such user and changes nothing that belongs to one. A standby could not have
//! written anyway.

use tokio_postgres::types::{ToSql, Type};

/// Asked on every connection before its answers are used: which schema, whether it may
/// write, and as whom the server runs the session (a pooler may have logged in as another
/// role). Read by name, alone ([`CHECK`]) or before a call's own columns.
macro_rules! check_columns {
    () => {
        "ivmfa_api.schema_version() AS ivmfa_schema_version, \
         pg_catalog.current_setting('transaction_read_only') AS ivmfa_read_only, \
         SESSION_USER::text AS ivmfa_session_user"
    };
}

/// The check alone: for administrators' connections, and to say why a checked call failed.
pub(crate) const CHECK: &str = concat!("SELECT ", check_columns!());

/// A parameter of a call, with the type the function declares for it.
#[derive(Clone, Copy)]
pub(crate) enum Param<'a> {
    Text(&'a str),
    Bool(bool),
    Int4(i32),
    Int8(i64),
}

/// A function of `ivmfa_api` and its arguments; it answers one row.
pub(crate) struct Call<'a> {
    /// Unqualified: `submit`.
    pub(crate) function: &'static str,
    pub(crate) params: Vec<Param<'a>>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(function: &'static str, params: Vec<Param<'a>>) -> Call<'a> {
        Call { function, params }
    }

    /// The statement alone.
    pub(crate) fn sql(&self) -> String {
        let args: Vec<String> = (1..=self.params.len()).map(|i| format!("${i}")).collect();
        format!(
            "SELECT * FROM ivmfa_api.{}({})",
            self.function,
            args.join(", ")
        )
    }

    /// The statement with the check first: its columns, then the call's, whose first
    /// argument is NULL unless the schema version is one of the array in the parameter
    /// after the call's own, the server may write, and the session runs as the role in the
    /// one after that ([`Call::checked_params`]). LATERAL makes the call depend on the
    /// check's row, so the check is computed before it.
    pub(crate) fn checked_sql(&self) -> String {
        let n = self.params.len();
        let mut args: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
        if let Some(first) = args.first_mut() {
            *first = format!(
                "CASE WHEN ivmfa_check.ivmfa_schema_version = ANY(${versions}) \
                 AND ivmfa_check.ivmfa_read_only = 'off' \
                 AND ivmfa_check.ivmfa_session_user = ${role} THEN $1 END",
                versions = n + 1,
                role = n + 2
            );
        }
        format!(
            "SELECT * FROM ({}) AS ivmfa_check, LATERAL ivmfa_api.{}({}) AS ivmfa_call",
            CHECK,
            self.function,
            args.join(", ")
        )
    }

    /// The parameters as tokio-postgres takes them.
    pub(crate) fn params(&self) -> Vec<(&(dyn ToSql + Sync), Type)> {
        self.params.iter().map(typed).collect()
    }

    /// [`Call::params`], then the schema versions this client knows and the role it asked
    /// for, for [`Call::checked_sql`].
    pub(crate) fn checked_params<'s>(
        &'s self,
        versions: &'s &'static [i32],
        role: &'s &'s str,
    ) -> Vec<(&'s (dyn ToSql + Sync), Type)> {
        let mut params = self.params();
        params.push((versions, Type::INT4_ARRAY));
        params.push((role, Type::TEXT));
        params
    }
}

fn typed<'s>(param: &'s Param<'_>) -> (&'s (dyn ToSql + Sync), Type) {
    match param {
        Param::Text(v) => (v, Type::TEXT),
        Param::Bool(v) => (v, Type::BOOL),
        Param::Int4(v) => (v, Type::INT4),
        Param::Int8(v) => (v, Type::INT8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_one_function_in_from_with_numbered_parameters() {
        let call = Call::new(
            "submit",
            vec![Param::Text("u"), Param::Text("a"), Param::Text("s")],
        );
        assert_eq!(call.sql(), "SELECT * FROM ivmfa_api.submit($1, $2, $3)");
        assert_eq!(call.params().len(), 3);
    }

    #[test]
    fn a_checked_call_withholds_its_first_argument_unless_the_check_passes() {
        let call = Call::new("verify", vec![Param::Int8(7)]);
        let sql = call.checked_sql();
        assert!(sql.starts_with(&format!("SELECT * FROM ({CHECK}) AS ivmfa_check, LATERAL ")));
        assert!(sql.ends_with(
            "LATERAL ivmfa_api.verify(CASE WHEN ivmfa_check.ivmfa_schema_version = ANY($2) \
             AND ivmfa_check.ivmfa_read_only = 'off' \
             AND ivmfa_check.ivmfa_session_user = $3 THEN $1 END) AS ivmfa_call"
        ));
        let versions: &'static [i32] = &[1];
        let role = "host_a";
        let params = call.checked_params(&versions, &role);
        let types: Vec<Type> = params.iter().map(|p| p.1.clone()).collect();
        assert_eq!(types, [Type::INT8, Type::INT4_ARRAY, Type::TEXT]);
    }
}
