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
    out(&format!(
        "key rotation {}: KEK v{} -> v{}; {} data keys re-wrapped; KEK v{} retired \
         (min_decryption_version = {})\n",
        if report.resumed {
            "resumed and completed"
        } else {
            "completed"
        },
        report.from,
        report.to,
        report.rewrapped,
        report.from,
        vault.min_decryption_version()
    ))
}

pub(super) fn rotate_token(ctx: &Context) -> CtlResult {
    let vault = ctx.open()?;
    let root = ctx.root_key_source();
    let v = vault.rotate_token_key(root.as_ref(), &ctx.actor()?, ctx.now())?;
    out(&format!(
        "token signing key v{v} is current (kid {}); older keys verify until retired\n",
        vault.token_keys().current_kid()
    ))
}

pub(super) fn retire_old_token_keys(ctx: &Context) -> CtlResult {
    let vault = ctx.open()?;
    let root = ctx.root_key_source();
    let n = vault.retire_old_token_keys(root.as_ref(), &ctx.actor()?, ctx.now())?;
    out(&format!(
        "{n} token signing key(s) retired; their tokens no longer verify\n"
    ))
}
