//! `allowed_cpus` follows the affinity mask it is called under (what `taskset` sets).

use shoal_runtime::executor::allowed_cpus;

#[test]
fn allowed_cpus_follows_the_affinity_mask() {
    let all = allowed_cpus();
    assert!(!all.is_empty());
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "sorted, no duplicates: {all:?}"
    );
    let last = *all.last().expect("one cpu");
    // A thread restricted to one CPU sees exactly that CPU, as a broker under `taskset -c` would.
    let seen = std::thread::spawn(move || {
        let mut mask = rustix::thread::CpuSet::new();
        mask.set(last);
        rustix::thread::sched_setaffinity(None, &mask).expect("set affinity");
        allowed_cpus()
    })
    .join()
    .expect("thread ran");
    assert_eq!(seen, vec![last]);
}
