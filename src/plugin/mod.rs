//! `kubectl tpp`: the kubectl plugin mode of the binary, run when it is invoked as
//! `kubectl-tpp` (a symlink or a copy on PATH, which kubectl finds) or as `tpp-operator kubectl`.
//!
//! It acts with the user's kubeconfig and RBAC only: `cli` parses the command line, `cluster`
//! reads and annotates objects through the API server, `view` renders `status` (a pure function
//! of the objects, their events and the time) and `actions` decides which annotation an action
//! sets and what the operator will do about it.

mod actions;
mod cli;
mod cluster;
#[cfg(test)]
mod samples;
mod view;

use clap::Parser;
use cli::{Command, PluginCli, Target};
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use tpp_operator::api::{AccountConsent, TppRegistration};

/// File name under which kubectl finds the plugin (`kubectl tpp ...`).
const PLUGIN_NAME: &str = "kubectl-tpp";

/// The plugin's arguments (without the program name) when the process was started as the
/// plugin, `None` when it is the operator's own command line.
pub fn invocation(args: &[OsString]) -> Option<Vec<OsString>> {
    let program = args.first()?;
    let file_name = Path::new(program).file_name()?.to_string_lossy();
    let file_name = file_name.strip_suffix(".exe").unwrap_or(&file_name);
    if file_name == PLUGIN_NAME {
        return Some(args[1..].to_vec());
    }
    match args.get(1) {
        Some(first) if first == "kubectl" => Some(args[2..].to_vec()),
        _ => None,
    }
}

/// Runs the plugin with `args` (without the program name); never panics on API data.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli =
        match PluginCli::try_parse_from(std::iter::once(OsString::from("kubectl tpp")).chain(args))
        {
            Ok(cli) => cli,
            Err(e) => {
                // Help and version go to stdout with success, usage errors to stderr.
                let _ = e.print();
                return if e.use_stderr() {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
        };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(output) => {
            print!("{}", printable(&output));
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {}", printable(&message));
            ExitCode::FAILURE
        }
    }
}

/// `text` safe for an admin's terminal: condition messages, client and consent ids and URLs
/// come from tenants and the provider, so every control character (escape sequences, carriage
/// returns, bells) and every bidirectional override is shown escaped; only line breaks stay.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
        if c != '\n' && (c.is_control() || bidi) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The two kinds the plugin works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `TppRegistration` (`tpp`).
    Registration,
    /// `AccountConsent` (`consent`).
    Consent,
}

impl Kind {
    /// The kind's name as the API knows it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Registration => "TppRegistration",
            Kind::Consent => "AccountConsent",
        }
    }

    /// The short resource name kubectl takes (`kubectl get tpp NAME`).
    pub fn short(self) -> &'static str {
        match self {
            Kind::Registration => "tpp",
            Kind::Consent => "consent",
        }
    }
}

/// An object of either kind, as read from the API server.
#[derive(Clone, Debug)]
pub enum Object {
    /// A TppRegistration.
    Registration(Box<TppRegistration>),
    /// An AccountConsent.
    Consent(Box<AccountConsent>),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Registration(_) => Kind::Registration,
            Object::Consent(_) => Kind::Consent,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Object::Registration(r) => &r.metadata,
            Object::Consent(c) => &c.metadata,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// `kind/name` as kubectl prints it (`tpp/cway`).
    pub fn reference(&self) -> String {
        format!("{}/{}", self.kind().short(), self.name())
    }
}

/// Runs one command; the text to print on success, the one-line error otherwise.
async fn run(cli: PluginCli) -> Result<String, String> {
    let (client, namespace) = cluster::connect(cli.namespace).await?;
    let cluster = cluster::Cluster::new(client, namespace);
    match cli.command {
        Command::Status { target } => {
            let object = cluster
                .find(&target, &[Kind::Registration, Kind::Consent])
                .await?;
            let events = cluster.events(&object).await;
            Ok(view::render(&object, &events, jiff::Timestamp::now()))
        }
        Command::Refresh { target } => annotate(&cluster, &target, actions::Action::Refresh).await,
        Command::Retry { target } => annotate(&cluster, &target, actions::Action::Retry).await,
        Command::RotateKey { target } => {
            annotate(&cluster, &target, actions::Action::RotateKey).await
        }
        Command::Url { target } => {
            let object = cluster.find(&target, &[Kind::Consent]).await?;
            actions::authorisation_url(&object).map(|url| format!("{url}\n"))
        }
    }
}

/// Finds the object an action applies to, decides the annotation and sets it.
async fn annotate(
    cluster: &cluster::Cluster,
    target: &Target,
    action: actions::Action,
) -> Result<String, String> {
    let object = cluster.find(target, action.kinds()).await?;
    let change = actions::plan(
        action,
        &object,
        actions::fresh_value(std::time::SystemTime::now()),
    )?;
    cluster
        .annotate(&object, change.annotation, &change.value)
        .await?;
    Ok(format!(
        "{} annotated: {}={}\n{}\n",
        object.reference(),
        change.annotation,
        change.value,
        change.explanation
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn invoked_as_kubectl_tpp_by_file_name() {
        assert_eq!(
            invocation(&args(&[
                "/home/me/.local/bin/kubectl-tpp",
                "status",
                "cway"
            ])),
            Some(args(&["status", "cway"]))
        );
        assert_eq!(invocation(&args(&["kubectl-tpp"])), Some(Vec::new()));
        assert_eq!(
            invocation(&args(&["/opt/bin/kubectl-tpp.exe", "url", "c"])).map(|a| a.len()),
            Some(2)
        );
    }

    #[test]
    fn invoked_as_the_kubectl_subcommand_of_the_operator() {
        assert_eq!(
            invocation(&args(&[
                "/usr/local/bin/tpp-operator",
                "kubectl",
                "refresh",
                "cway"
            ])),
            Some(args(&["refresh", "cway"]))
        );
    }

    #[test]
    fn the_operators_own_command_line_is_left_alone() {
        assert_eq!(invocation(&args(&["tpp-operator", "run"])), None);
        assert_eq!(invocation(&args(&["tpp-operator"])), None);
        assert_eq!(invocation(&args(&["kubectl-tppx", "status", "a"])), None);
        assert_eq!(
            invocation(&args(&["tpp-operator", "crds", "kubectl"])),
            None
        );
        assert_eq!(invocation(&[]), None);
    }

    #[test]
    fn terminal_escapes_from_tenants_never_reach_the_terminal() {
        let hostile =
            "ok\u{1b}]52;c;cGF5bG9hZA==\u{7}\u{1b}[2J\rfake\u{9b}31m\u{202e}txt.exe\nnext";
        let shown = printable(hostile);
        assert!(
            !shown.chars().any(|c| c.is_control() && c != '\n'),
            "{shown:?}"
        );
        assert!(!shown.contains('\u{202e}'), "{shown:?}");
        assert!(shown.contains("\\u{1b}]52;c;"), "{shown:?}");
        assert_eq!(shown.lines().count(), 2, "line breaks stay: {shown:?}");
    }
}
