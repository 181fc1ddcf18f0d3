//! `tally compact`: what the store does daily (flush, then a full compaction that also drops
//! expired data), on demand, on a stopped store's directory.

use anyhow::{Context, Result};

use crate::cli::CompactArgs;

/// `tally compact`.
pub fn run(a: &CompactArgs) -> Result<()> {
    let data_dir = &a.data_dir;
    let store = tally_store::Store::open(tally_store::StoreOptions::new(data_dir))
        .with_context(|| format!("opening {}", data_dir.display()))?;
    store.close()?;
    store.compact()?;
    let m = store.metrics();
    let get = |k: &str| m.iter().find(|e| e.name == k).map_or(0, |e| e.value);
    println!(
        "series={} sst_bytes={} live_data_bytes={}",
        get("series"),
        get("rocksdb_sst_bytes"),
        get("rocksdb_live_data_bytes")
    );
    Ok(())
}
