//! The portal in a real browser: runs the Playwright scripts of `tests/browser/` (Debian's
//! Chromium, axe-core, and one sign-in at `oidc-provider` from npm) against the binaries
//! this suite tests. Without Chromium, Playwright or the provider's npm packages the tests
//! say so and pass, unless `CDV_TESTS_REQUIRE_BROWSER=1` (set by `.ci/run`) makes that a
//! failure. Screenshots and axe reports land in `target/browser-artifacts/`.

use std::path::Path;
use std::process::Command;

use vault_tests::{binary, repo_root, text};

/// Whether the browser tests can run here; why not otherwise.
fn missing(needs_provider: bool) -> Option<String> {
    if !Path::new("/usr/bin/chromium").exists() {
        return Some("/usr/bin/chromium is not installed".into());
    }
    let probe = Command::new("python3")
        .args(["-c", "import playwright, axe_playwright_python"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return Some("python3 cannot import playwright and axe_playwright_python".into());
    }
    if needs_provider
        && !repo_root()
            .join("tests/browser/oidc/node_modules/oidc-provider")
            .exists()
    {
        return Some("tests/browser/oidc has no node_modules (npm ci there)".into());
    }
    None
}

fn run(script: &str, needs_provider: bool) {
    if let Some(why) = missing(needs_provider) {
        assert!(
            std::env::var_os("CDV_TESTS_REQUIRE_BROWSER").is_none(),
            "browser test {script} cannot run (CDV_TESTS_REQUIRE_BROWSER is set): {why}"
        );
        eprintln!("skipped {script}: {why}");
        return;
    }
    let root = repo_root();
    let artifacts = root.join("target/browser-artifacts");
    let out = Command::new("python3")
        .arg(root.join("tests/browser").join(script))
        .env(
            "CDV_BIN_DIR",
            binary("vault-server").parent().unwrap_or(&root),
        )
        .env("PORTAL_ARTIFACTS", &artifacts)
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed\n--- stdout\n{}\n--- stderr\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn the_portal_works_in_chromium_in_both_languages_without_serious_accessibility_problems() {
    run("portal_test.py", false);
}

#[test]
fn the_portal_signs_in_at_an_independent_openid_provider() {
    run("oidc_provider_test.py", true);
}

#[test]
fn the_audit_console_works_in_chromium_in_both_languages_without_serious_accessibility_problems() {
    run("console_test.py", false);
}
