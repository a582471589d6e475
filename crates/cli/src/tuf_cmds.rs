//! `ferry tuf`: the TUF community's client-under-test CLI protocol over `ferry-catalog`.
//! Exit 0 on success, 1 on any failure (the error is printed on stderr).

use std::process::ExitCode;

use ferry_catalog::conformance;

use crate::args::{TufAction, TufArgs};
use crate::failure::Failure;
use ferry_types::Diagnose;

pub async fn run(a: TufArgs) -> Result<ExitCode, Failure> {
    match &a.action {
        TufAction::Init { root } => {
            conformance::tuf_init(&a.metadata_dir, root).map_err(catalog_failure)?;
        }
        TufAction::Refresh => {
            let metadata_url = url(a.metadata_url.as_deref(), "--metadata-url")?;
            conformance::tuf_refresh(&a.metadata_dir, &metadata_url)
                .await
                .map_err(catalog_failure)?;
        }
        TufAction::Download => {
            let metadata_url = url(a.metadata_url.as_deref(), "--metadata-url")?;
            let target_base_url = url(a.target_base_url.as_deref(), "--target-base-url")?;
            if a.target_name.is_empty() {
                return Err(missing("--target-name"));
            }
            let target_dir = a
                .target_dir
                .as_deref()
                .ok_or_else(|| missing("--target-dir"))?;
            let paths = conformance::tuf_download(
                &a.metadata_dir,
                &metadata_url,
                &a.target_name,
                &target_base_url,
                target_dir,
            )
            .await
            .map_err(catalog_failure)?;
            for path in paths {
                tracing::info!(path = %path.display(), "target downloaded");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn catalog_failure(error: ferry_catalog::CatalogError) -> Failure {
    Failure::new(error.code(), error.to_string(), error.fix())
}

fn missing(flag: &str) -> Failure {
    Failure::new(
        "USAGE",
        format!("this ferry tuf command needs {flag}"),
        format!("pass {flag}"),
    )
}

fn url(text: Option<&str>, flag: &str) -> Result<url::Url, Failure> {
    let text = text.ok_or_else(|| missing(flag))?;
    url::Url::parse(text).map_err(|e| {
        Failure::new(
            "USAGE",
            format!("{flag} {text:?} is not a URL: {e}"),
            "give an absolute http, https or file URL",
        )
    })
}
