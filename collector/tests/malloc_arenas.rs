//! glibc's arena cap, alone in its own process: arenas once made are never given back, and
//! glibc fixes its limit once it has 8 arenas or first needs one after a cap, so only a
//! process that has run nothing else can show the cap taking effect. Keep this file to
//! this one test.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::sync::{Arc, Barrier};

use tocsin_collector::store::{cap_malloc_arenas, malloc_bytes};

/// Start `n` threads that each allocate and hold it until all have: glibc gives each of
/// them an arena unless it is at its limit.
fn allocate_on_threads_at_once(n: usize) {
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let held = std::hint::black_box(vec![i as u8; 64 << 10]);
                barrier.wait();
                drop(held);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("allocating thread");
    }
}

#[test]
fn capped_arenas_are_shared_by_new_threads() {
    let start = malloc_bytes().expect("glibc").arenas;
    assert!(
        (1..=4).contains(&start),
        "the main arena and the harness's threads' only: {start}"
    );
    // Uncapped and under 8 arenas, glibc gives threads that allocate at once new ones.
    allocate_on_threads_at_once(4);
    let uncapped = malloc_bytes().expect("glibc").arenas;
    assert!(uncapped >= start + 2, "{start} arenas, then {uncapped}");
    // Capped where it stands: eight more threads at once share those.
    assert!(cap_malloc_arenas(uncapped));
    allocate_on_threads_at_once(8);
    let capped = malloc_bytes().expect("glibc").arenas;
    assert_eq!(capped, uncapped, "capped at {uncapped}");
}
