//! `--namespace` and `--selector`: what this operator serves. Several releases with disjoint
//! scopes split a fleet between them (see [`Scope`]).

use crate::controller::{Scope, ScopeError};

#[derive(Debug, clap::Args)]
pub struct ScopeArgs {
    /// Watch only these namespaces, comma-separated or repeated (the chart's watchNamespaces);
    /// the operator then needs access in these namespaces only. Every namespace when absent.
    #[arg(
        long = "namespace",
        env = "WATCH_NAMESPACE",
        value_name = "NAMESPACE",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// Serve only the WebhookCaCertificates whose labels match this selector, in kubectl's `-l`
    /// syntax (`shard=eu`, `shard!=us`, `tier in (a,b)`, `!legacy`, comma-separated). Releases
    /// with disjoint selectors split the resources between them.
    #[arg(long, value_name = "SELECTOR")]
    selector: Option<String>,
}

impl ScopeArgs {
    /// The checked scope; a mistake is reported before the operator connects to anything.
    pub fn scope(&self) -> Result<Scope, ScopeError> {
        Scope::new(&self.namespaces, self.selector.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        scope: ScopeArgs,
    }

    fn scope(args: &[&str]) -> Result<Scope, String> {
        let cli = Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.scope.scope().map_err(|e| e.to_string())
    }

    #[test]
    fn namespaces_come_comma_separated_or_repeated() {
        let want = Scope::new(["a", "b", "c"], None).unwrap();
        assert_eq!(
            scope(&["--namespace", "a,b", "--namespace", "c"]),
            Ok(want.clone())
        );
        assert_eq!(scope(&["--namespace=a,b,c"]), Ok(want));
    }

    #[test]
    fn the_selector_is_checked_at_startup() {
        assert_eq!(
            scope(&["--selector", "shard=eu"]).map(|s| s.selector().map(str::to_owned)),
            Ok(Some("shard=eu".to_owned()))
        );
        let err = scope(&["--selector", "shard in eu"]).unwrap_err();
        assert!(err.contains("label selector \"shard in eu\""), "{err}");
        let err = scope(&["--namespace", "Team_A"]).unwrap_err();
        assert!(
            err.contains("\"Team_A\" is not a valid namespace name"),
            "{err}"
        );
    }
}
