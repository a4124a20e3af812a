//! CPU-bound work spread over the cores, where one unlock or snapshot has a
//! lot of it: sealing snapshot chunks, opening records in a replay,
//! decoding and indexing a large type's columns. (A snapshot's chunks are
//! opened on one thread as they are read, beside the reading.)

/// Threads to spread over: one per core, at most eight.
fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
}

/// `f` applied to each of `items` and its place, answered in order: the
/// items are split into one run per core.
pub fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(usize, T) -> R + Sync) -> Vec<R> {
    let threads = threads();
    if threads == 1 || items.len() < 2 {
        return items
            .into_iter()
            .enumerate()
            .map(|(i, t)| f(i, t))
            .collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let f = &f;
    let mut items = items.into_iter().enumerate();
    let runs = std::iter::from_fn(|| {
        let run: Vec<_> = items.by_ref().take(per_thread).collect();
        (!run.is_empty()).then_some(run)
    });
    std::thread::scope(|scope| {
        let runs: Vec<_> = runs
            .map(|run| {
                scope.spawn(move || run.into_iter().map(|(i, t)| f(i, t)).collect::<Vec<_>>())
            })
            .collect();
        runs.into_iter()
            .flat_map(|run| run.join().expect("spread work does not panic"))
            .collect()
    })
}

/// `a` and `b` both: at once, `a` on a second thread, when `apart` (the
/// work is large enough to be worth one), else one after the other.
pub fn join<A: Send, B>(
    apart: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B,
) -> (A, B) {
    if !apart || threads() == 1 {
        return (a(), b());
    }
    std::thread::scope(|scope| {
        let a = scope.spawn(a);
        let b = b();
        (a.join().expect("spread work does not panic"), b)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn map_answers_in_order_with_each_place() {
        for n in [0usize, 1, 2, 7, 100] {
            let items: Vec<usize> = (0..n).map(|i| i * 3).collect();
            let mapped = super::map(items, |i, t| (i, t + 1));
            assert_eq!(mapped, (0..n).map(|i| (i, i * 3 + 1)).collect::<Vec<_>>());
        }
    }

    #[test]
    fn join_answers_both_either_way() {
        for apart in [false, true] {
            assert_eq!(super::join(apart, || 1, || "b"), (1, "b"));
        }
    }
}
