//! What the benchmark tools share: the eight fields a release asks for, and a copy of the
//! repository's policies with a benchmark purpose (many uses, no consent) and agency.

use std::path::{Path, PathBuf};

/// The eight fields every HTTP benchmark release asks for.
pub const FIELDS: [&str; 8] = [
    "full_name",
    "date_of_birth",
    "sex",
    "permanent_address",
    "phone",
    "email",
    "social_insurance_number",
    "health_insurance_number",
];

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let p = e?.path();
        let Some(name) = p.file_name() else { continue };
        let dest = to.join(name);
        if p.is_dir() {
            copy_dir(&p, &dest)?;
        } else {
            std::fs::copy(&p, &dest)?;
        }
    }
    Ok(())
}

/// `max_uses` of purpose `bench_few`.
pub const FEW_USES: u32 = 3;

/// `dir/policies`: the repository's policies plus purposes `bench_release` (these fields,
/// 10,000 uses, a day, no consent) and `bench_few` (the same with 3 uses, for the crash
/// harness's use counting) and agency `bench-agency` (city-wide, both purposes).
pub fn bench_policies(dir: &Path, fields: &[&str]) -> std::io::Result<PathBuf> {
    let pol = dir.join("policies");
    copy_dir(&crate::policies_dir(), &pol)?;
    std::fs::write(
        pol.join("purposes/bench_release.toml"),
        format!(
            "id = \"bench_release\"\nlabel_vi = \"Đo hiệu năng\"\nlabel_en = \"Benchmark\"\n\
             procedure_group = \"bench\"\nlegal_basis = \"benchmark only\"\nfields = {fields:?}\n\
             max_ttl_seconds = 86400\nmax_uses = 10000\nconsent = \"not_required\"\n"
        ),
    )?;
    std::fs::write(
        pol.join("purposes/bench_few.toml"),
        format!(
            "id = \"bench_few\"\nlabel_vi = \"Đo hiệu năng (3 lần)\"\nlabel_en = \"Benchmark (3 uses)\"\n\
             procedure_group = \"bench\"\nlegal_basis = \"benchmark only\"\nfields = {fields:?}\n\
             max_ttl_seconds = 86400\nmax_uses = {FEW_USES}\nconsent = \"not_required\"\n"
        ),
    )?;
    let mut agencies = std::fs::read_to_string(pol.join("agencies.toml"))?;
    agencies.push_str(
        "\n[[agency]]\nid = \"bench-agency\"\nname_vi = \"Đo hiệu năng\"\nname_en = \"Benchmark\"\n\
         level = \"city\"\njurisdiction = [\"city\"]\npurposes = [\"bench_release\", \"bench_few\"]\n",
    );
    std::fs::write(pol.join("agencies.toml"), agencies)?;
    Ok(pol)
}
