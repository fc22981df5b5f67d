//! `par_map`: a function over items on every core, results in order.

use anyhow::Result;

/// `f` over `items` on every core (scoped threads, one contiguous chunk each), results
/// in order. For jobs too small to keep candle's own threads busy (one utterance, one
/// file).
pub fn par_map<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(threads).max(1);
    let f = &f;
    let parts = std::thread::scope(|s| {
        let hs: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Result<Vec<_>>>()))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("worker thread"))
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(parts.into_iter().flatten().collect())
}
