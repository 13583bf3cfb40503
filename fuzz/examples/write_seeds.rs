//! Writes the seed corpora: `cargo run --example write_seeds [-- DIR]` (default `corpus`), one
//! file per seed under `DIR/<target>/`, named by a hash of its content so reruns are idempotent.

use std::path::PathBuf;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    for (target, seeds) in leasedlock_fuzz::seeds::all() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for seed in &seeds {
            std::fs::write(dir.join(format!("seed-{:016x}", fnv1a(seed))), seed)?;
        }
        println!("{target}: {} seeds in {}", seeds.len(), dir.display());
    }
    Ok(())
}
