//! Authorization by forwarded identity: each action a service offers is
//! allowed to the groups its config names. The caller's groups come from
//! `x-forwarded-groups`, which the gateway sets from the caller's verified
//! token (`[gateway.jwt.forward_claims]`) and never takes from a client.
//! Calls between the services carry the service token and are always allowed.

use std::collections::BTreeMap;

use async_graphql::{Context, Guard};
use serde::Deserialize;

use super::{CallerToken, GqlResultExt, ServiceError};

/// The header with the caller's groups, comma-separated.
pub const GROUPS_HEADER: &str = "x-forwarded-groups";
/// In a group list: anyone, with or without groups.
const ANYONE: &str = "*";

/// The caller's groups (request data of every HTTP and WebSocket request).
#[derive(Clone, Debug, Default)]
pub struct CallerGroups(pub Vec<String>);

impl CallerGroups {
    pub fn from_header(value: Option<&str>) -> CallerGroups {
        CallerGroups(
            value
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(String::from)
                .collect(),
        )
    }
}

/// `[services.NAME.authorization]`: which groups may do each action.
/// Without the section nothing is allowed to outside callers; the
/// repository's dev config (`run.sh`) allows everything with `default = ["*"]`.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// Groups allowed an action `actions` does not name; `["*"]`: anyone.
    #[serde(default)]
    pub default: Vec<String>,
    /// Action -> groups allowed.
    #[serde(default)]
    pub actions: BTreeMap<String, Vec<String>>,
    /// The service token of calls between the services (from the service's config).
    #[serde(skip)]
    service_token: Option<String>,
}

impl Authorization {
    /// Everything allowed to everyone (tests and the dev config).
    pub fn allow_all() -> Authorization {
        Authorization {
            default: vec![ANYONE.into()],
            ..Default::default()
        }
    }

    /// The rules with the service's own token, which passes every check.
    pub fn with_service_token(mut self, token: Option<String>) -> Authorization {
        self.service_token = token;
        self
    }

    /// Refuses action names the service does not have, naming the known ones.
    pub fn check(&self, service: &str, known: &[&str]) -> Result<(), ServiceError> {
        match self.actions.keys().find(|a| !known.contains(&a.as_str())) {
            Some(a) => Err(ServiceError::bad_input(format!(
                "[services.{service}.authorization.actions] `{a}` is not an action of this service; use {}",
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }

    fn allowed(&self, action: &str) -> &[String] {
        self.actions.get(action).unwrap_or(&self.default)
    }

    /// Whether `caller` may do `action`; the refusal says who may.
    fn decide(
        &self,
        action: &str,
        caller: &CallerGroups,
        token: &CallerToken,
    ) -> Result<(), ServiceError> {
        let allowed = self.allowed(action);
        if allowed.iter().any(|g| g == ANYONE)
            || super::token_matches(token, self.service_token.as_deref())
            || caller.0.iter().any(|g| allowed.contains(g))
        {
            return Ok(());
        }
        let who = if allowed.is_empty() {
            "no group".to_string()
        } else {
            format!("the groups {}", allowed.join(", "))
        };
        let has = if caller.0.is_empty() {
            "none".to_string()
        } else {
            caller.0.join(", ")
        };
        Err(ServiceError::Forbidden(format!(
            "`{action}` is allowed to {who}; the caller's groups ({GROUPS_HEADER}): {has}"
        )))
    }
}

/// A field guard: the caller may do `self.0`.
pub struct Allowed(pub &'static str);

impl Guard for Allowed {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let none = Authorization::default();
        let rules = ctx.data_opt::<Authorization>().unwrap_or(&none);
        let groups = ctx.data_opt::<CallerGroups>().cloned().unwrap_or_default();
        let token = ctx.data_opt::<CallerToken>().cloned().unwrap_or_default();
        rules.decide(self.0, &groups, &token).gql()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Authorization {
        Authorization {
            default: vec!["admins".into()],
            actions: [(
                "read_pipeline".to_string(),
                vec!["readers".to_string(), "admins".to_string()],
            )]
            .into(),
            service_token: None,
        }
        .with_service_token(Some("t0ken".into()))
    }

    fn caller(groups: &str) -> CallerGroups {
        CallerGroups::from_header(Some(groups))
    }

    #[test]
    fn groups_decide_per_action() {
        let r = rules();
        let anonymous = CallerToken(None);
        assert!(r
            .decide("read_pipeline", &caller("readers"), &anonymous)
            .is_ok());
        assert!(r
            .decide("read_pipeline", &caller(" x , admins"), &anonymous)
            .is_ok());
        let e = r
            .decide("delete_pipeline", &caller("readers"), &anonymous)
            .unwrap_err();
        assert_eq!(e.code(), "FORBIDDEN");
        assert!(e.to_string().contains("`delete_pipeline` is allowed to the groups admins; the caller's groups (x-forwarded-groups): readers"), "{e}");
        let e = r
            .decide("read_pipeline", &caller(""), &anonymous)
            .unwrap_err();
        assert!(e.to_string().ends_with(": none"), "{e}");
        // the other services' calls carry the token
        assert!(r
            .decide(
                "delete_pipeline",
                &caller(""),
                &CallerToken(Some("t0ken".into()))
            )
            .is_ok());
        assert!(r
            .decide(
                "delete_pipeline",
                &caller(""),
                &CallerToken(Some("wrong".into()))
            )
            .is_err());
    }

    #[test]
    fn no_section_allows_nothing_and_allow_all_everything() {
        let none = Authorization::default();
        assert!(none
            .decide("read_logs", &caller("admins"), &CallerToken(None))
            .is_err());
        assert!(Authorization::allow_all()
            .decide("read_logs", &caller(""), &CallerToken(None))
            .is_ok());
    }

    #[test]
    fn unknown_actions_are_named() {
        let r = Authorization {
            actions: [("drop_tables".to_string(), vec![])].into(),
            ..Default::default()
        };
        let e = r
            .check("pipeline", &["read_pipeline", "create_pipeline"])
            .unwrap_err();
        assert!(e.to_string().contains("`drop_tables` is not an action of this service; use read_pipeline, create_pipeline"), "{e}");
    }
}
