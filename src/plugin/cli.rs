//! The plugin's command line: `kubectl tpp [-n NAMESPACE] COMMAND NAME`.

use super::Kind;
use clap::{Parser, Subcommand};
use std::str::FromStr;

/// Look into and nudge TppRegistrations and AccountConsents with your own kubeconfig and RBAC.
///
/// NAME is looked up as a TppRegistration first, then as an AccountConsent; write tpp/NAME or
/// consent/NAME to name the kind.
#[derive(Parser, Debug)]
#[command(name = "kubectl tpp", version, disable_help_subcommand = true)]
pub struct PluginCli {
    /// Namespace of the object (default: the current context's namespace).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The plugin's commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Ready, tokens, keys and the last 5 events of a TppRegistration or AccountConsent.
    Status {
        /// NAME, tpp/NAME or consent/NAME.
        target: Target,
    },
    /// Have the operator fetch a new client token for a TppRegistration now.
    Refresh {
        /// NAME or tpp/NAME.
        target: Target,
    },
    /// Allow one more registration call (TppRegistration) or consent-creation call
    /// (AccountConsent) after one whose outcome is unknown.
    Retry {
        /// NAME, tpp/NAME or consent/NAME.
        target: Target,
    },
    /// Replace the generated signing key of a TppRegistration.
    RotateKey {
        /// NAME or tpp/NAME.
        target: Target,
    },
    /// Print the authorisation URL of an AccountConsent (nothing else, for scripts).
    Url {
        /// NAME or consent/NAME.
        target: Target,
    },
}

/// An object named on the command line, with its kind when given (`tpp/NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The kind, when the user named it.
    pub kind: Option<Kind>,
    /// The object's name.
    pub name: String,
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = match s.split_once('/') {
            Some((resource, name)) => (Some(parse_kind(resource)?), name),
            None => (None, s),
        };
        if !is_object_name(name) {
            return Err(format!(
                "{name:?} is not an object name (lower-case letters, digits, '-' and '.', at most 253 characters)"
            ));
        }
        Ok(Target {
            kind,
            name: name.to_string(),
        })
    }
}

/// The kind of a `RESOURCE/NAME` argument; accepts what `kubectl get -o name` prints
/// (`tppregistration.tpp-operator.dev/cway`) and the short names.
fn parse_kind(resource: &str) -> Result<Kind, String> {
    let bare = resource
        .strip_suffix(".tpp-operator.dev")
        .unwrap_or(resource)
        .to_ascii_lowercase();
    match bare.as_str() {
        "tpp" | "tpps" | "tppregistration" | "tppregistrations" => Ok(Kind::Registration),
        "consent" | "consents" | "accountconsent" | "accountconsents" => Ok(Kind::Consent),
        _ => Err(format!(
            "unknown kind {resource:?}: use tpp/NAME (TppRegistration) or consent/NAME (AccountConsent)"
        )),
    }
}

/// An RFC 1123 subdomain, the names both kinds take; anything else never reaches a URL.
fn is_object_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 253
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<PluginCli, clap::Error> {
        PluginCli::try_parse_from(std::iter::once("kubectl tpp").chain(args.iter().copied()))
    }

    #[test]
    fn names_with_and_without_a_kind() {
        assert_eq!(
            "cway".parse::<Target>(),
            Ok(Target {
                kind: None,
                name: "cway".into()
            })
        );
        assert_eq!(
            "tpp/cway".parse::<Target>().map(|t| t.kind),
            Ok(Some(Kind::Registration))
        );
        assert_eq!(
            "consent/cway-accounts".parse::<Target>().map(|t| t.kind),
            Ok(Some(Kind::Consent))
        );
        assert_eq!(
            "tppregistration.tpp-operator.dev/cway"
                .parse::<Target>()
                .map(|t| t.kind),
            Ok(Some(Kind::Registration))
        );
        assert_eq!(
            "accountconsents/a.b".parse::<Target>().map(|t| t.name),
            Ok("a.b".to_string())
        );
    }

    #[test]
    fn bad_names_and_kinds_are_refused() {
        for bad in [
            "",
            "pod/x",
            "tpp/",
            "Cway",
            "a/b/c",
            "../x",
            "-x",
            "x-",
            "a b",
            "x?watch=1",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?} accepted");
        }
        assert!(("a".repeat(253)).parse::<Target>().is_ok());
        assert!(("a".repeat(254)).parse::<Target>().is_err());
    }

    #[test]
    fn commands_and_the_namespace_flag_anywhere() {
        let cli = parse(&["-n", "team-a", "status", "cway"]).expect("parse");
        assert_eq!(cli.namespace.as_deref(), Some("team-a"));
        assert!(matches!(cli.command, Command::Status { target } if target.name == "cway"));
        let cli = parse(&["rotate-key", "tpp/cway", "--namespace", "b"]).expect("parse");
        assert_eq!(cli.namespace.as_deref(), Some("b"));
        assert!(matches!(cli.command, Command::RotateKey { .. }));
        for (args, ok) in [
            (&["refresh", "cway"][..], true),
            (&["retry", "consent/c"], true),
            (&["url", "c"], true),
            (&["url"], false),
            (&["status", "a", "b"], false),
            (&["frobnicate", "a"], false),
            (&[], false),
        ] {
            assert_eq!(parse(args).is_ok(), ok, "{args:?}");
        }
    }
}
