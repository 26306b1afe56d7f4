//! `vaultctl keys …`: KEK rotation (every DEK re-wrapped, the old KEK retired) and grant-token
//! signing key rotation and retirement.

use std::ops::ControlFlow;

use super::{Context, CtlResult, out, progress_bar};

pub(super) fn rotate(ctx: &Context) -> CtlResult {
    let vault = ctx.open()?;
    let total = vault.citizen_count()?;
    let bar = progress_bar(total, "re-wrapping data keys");
    let root = ctx.root_key_source();
    let actor = ctx.actor()?;
    let report = vault.rotate_keys(root.as_ref(), 1000, &actor, ctx.now(), &mut |p| {
        bar.set_position(p.visited);
        ControlFlow::Continue(())
    })?;
    bar.finish_and_clear();
    out(&rotated_text(&report, vault.min_decryption_version()))
}

/// What a completed KEK rotation says.
pub fn rotated_text(report: &vault_core::vault::RotationReport, min_decryption: u32) -> String {
    format!(
        "key rotation {}: KEK v{} -> v{}; {} data keys re-wrapped; KEK v{} retired \
         (min_decryption_version = {min_decryption})\n",
        if report.resumed {
            "resumed and completed"
        } else {
            "completed"
        },
        report.from,
        report.to,
        report.rewrapped,
        report.from,
    )
}

/// What a token key rotation says.
pub fn token_rotated_text(version: u32, kid: &str) -> String {
    format!(
        "token signing key v{version} is current (kid {kid}); older keys verify until retired\n"
    )
}

/// What retiring old token keys says.
pub fn retired_text(n: usize) -> String {
    format!("{n} token signing key(s) retired; their tokens no longer verify\n")
}

pub(super) fn rotate_token(ctx: &Context) -> CtlResult {
    let vault = ctx.open()?;
    let root = ctx.root_key_source();
    let v = vault.rotate_token_key(root.as_ref(), &ctx.actor()?, ctx.now())?;
    out(&token_rotated_text(v, vault.token_keys().current_kid()))
}

pub(super) fn retire_old_token_keys(ctx: &Context) -> CtlResult {
    let vault = ctx.open()?;
    let root = ctx.root_key_source();
    let n = vault.retire_old_token_keys(root.as_ref(), &ctx.actor()?, ctx.now())?;
    out(&retired_text(n))
}
