//! `ferry validate`: checks config.yaml and every task file, reporting all problems at once.

use super::{Cli, EXIT_CONFIG, EXIT_OK, load_project, print_problems};

pub async fn run(cli: &Cli) -> i32 {
    let project = match load_project(cli) {
        Ok(p) => p,
        Err(code) => return code,
    };
    for w in project.warnings() {
        eprintln!("warning: {w}");
    }
    let problems = project.problems();
    if !problems.is_empty() {
        print_problems(&problems);
        return EXIT_CONFIG;
    }
    // The API beyond loopback needs a user (the store says whether one exists).
    if let Some(http) = &project.config.http
        && !http.listen.ip().is_loopback()
    {
        let users = match crate::store::open(&project.config.store).await {
            Ok(store) => {
                let n = store.users().await.map(|u| u.len());
                store.close().await;
                n.unwrap_or(0)
            }
            Err(_) => 0,
        };
        if let Err(e) = crate::server::api::check_exposure(http.listen, users) {
            eprintln!("{}: http.listen: {e}", cli.config.display());
            return EXIT_CONFIG;
        }
    }
    println!(
        "{} and {} task(s) are valid",
        cli.config.display(),
        project.tasks.len()
    );
    EXIT_OK
}
