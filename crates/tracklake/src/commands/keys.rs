//! `tracklake keys create`: a new API key, printed once with the config
//! entry that admits it (the config keeps only its hash).

use tracklake_server::{Scope, new_key};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Make a key; print it once, and the lines to add to the config.
    Create {
        /// What it may do: write (send events), read (read events, SQL,
        /// reports, metrics), admin (everything). Comma-separated.
        #[arg(long, value_delimiter = ',', required = true, value_parser = parse_scope)]
        scope: Vec<Scope>,
        /// Who holds it, for your records and the logs.
        #[arg(long, default_value = "key")]
        name: String,
    },
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    serde_json::from_value(serde_json::Value::from(text))
        .map_err(|_| format!("{text:?}: use write, read or admin"))
}

pub fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Create { scope, name } => {
            let (key, entry) = new_key(&name, &scope);
            let scopes: Vec<String> = scope
                .iter()
                .map(|s| {
                    format!(
                        "\"{}\"",
                        serde_json::to_value(s)
                            .unwrap_or_default()
                            .as_str()
                            .unwrap_or("")
                    )
                })
                .collect();
            println!("{key}");
            eprintln!("\nThe key above is shown only now. Add this to your config file:\n");
            eprintln!(
                "[[server.keys]]\nname = {:?}\nscopes = [{}]\nsha256 = \"{}\"",
                entry.name,
                scopes.join(", "),
                entry.sha256
            );
            eprintln!(
                "\nand send it as `Authorization: Bearer {key}` (CLI: --key or TRACKLAKE_KEY)."
            );
            Ok(())
        }
    }
}
