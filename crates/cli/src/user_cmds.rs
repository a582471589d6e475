//! `ferry server user add NAME --role viewer|operator`: dashboard users, written to the
//! server's database (--database, or the data directory's; the password from standard
//! input or --password-file).

use std::io::BufRead;
use std::process::ExitCode;

use ferry_server::DataDir;
use ferry_server::dashboard::Role;

use crate::args::{ServerUserArgs, UserAction};
use crate::failure::Failure;

pub async fn run(a: ServerUserArgs) -> Result<ExitCode, Failure> {
    let UserAction::Add(add) = a.action;
    let json = add.server.json;
    let role = Role::parse(&add.role).ok_or_else(|| {
        Failure::new(
            "USAGE",
            format!("{:?} is not a role", add.role),
            "pass --role viewer or --role operator",
        )
    })?;
    let password = match &add.password_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| {
                Failure::new(
                    "PASSWORD_UNREADABLE",
                    format!(
                        "the password file {} could not be read: {e}",
                        path.display()
                    ),
                    "check the --password-file path and its permissions",
                )
            })?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map_err(|e| {
                Failure::new(
                    "PASSWORD_UNREADABLE",
                    format!("the password could not be read from standard input: {e}"),
                    "pipe the password on one line, or pass --password-file",
                )
            })?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let db = DataDir::open_database(&add.server.data, add.server.database.as_deref())
        .await
        .map_err(|e| Failure::from(e).json(json))?;
    db.add_dashboard_user(&add.name, role, &password, add.replace)
        .await
        .map_err(|e| Failure::from(e).json(json))?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "user": add.name, "role": role.as_str() })
        );
    } else {
        println!("dashboard user {} added ({})", add.name, role.as_str());
    }
    Ok(ExitCode::SUCCESS)
}
