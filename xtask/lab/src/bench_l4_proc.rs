//! What the L4 benchmark does to and reads from processes: CPU pinning
//! (load tool and servers on one CPU, the proxies on the other) and the
//! proxies' CPU time and RSS while a run carries load.
use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use nix::{sched::CpuSet, unistd::Pid};

use crate::bench::{cpu_seconds, status_kib};

/// The pods (children of this process) run here.
pub const PODS_CPU: usize = 0;
/// Every proxy (agents, ztunnels) runs here.
pub const PROXY_CPU: usize = 1;

fn cpu_set(cpu: usize) -> anyhow::Result<CpuSet> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    Ok(set)
}

/// Whether this process may run on both CPUs pinning uses. (Not
/// `available_parallelism`: it also counts a cgroup CPU quota, which
/// limits time, not which CPUs exist.)
pub fn can_pin() -> bool {
    nix::sched::sched_getaffinity(Pid::from_raw(0)).is_ok_and(|set| {
        set.is_set(PODS_CPU).unwrap_or(false) && set.is_set(PROXY_CPU).unwrap_or(false)
    })
}

/// Pins every thread of `pid` to `cpu` (threads created later inherit it).
pub fn pin_threads(pid: u32, cpu: usize) -> anyhow::Result<()> {
    let set = cpu_set(cpu)?;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid: i32 = task?.file_name().to_string_lossy().parse()?;
        nix::sched::sched_setaffinity(Pid::from_raw(tid), &set)
            .map_err(|e| anyhow::anyhow!("pinning thread {tid} of {pid} to CPU {cpu}: {e}"))?;
    }
    Ok(())
}

/// Pins the calling thread (and so every process it starts from now on)
/// to [`PODS_CPU`]; the previous CPU set comes back on drop.
pub struct PodsPinned {
    before: CpuSet,
}

impl PodsPinned {
    pub fn new() -> anyhow::Result<Self> {
        let me = Pid::from_raw(0);
        let before = nix::sched::sched_getaffinity(me)?;
        nix::sched::sched_setaffinity(me, &cpu_set(PODS_CPU)?)?;
        Ok(Self { before })
    }
}

impl Drop for PodsPinned {
    fn drop(&mut self) {
        let _ = nix::sched::sched_setaffinity(Pid::from_raw(0), &self.before);
    }
}

/// One process's use of the machine over a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// utime + stime spent during the run.
    pub cpu_s: f64,
    pub wall_s: f64,
    /// Mean of VmRSS samples taken every 100 ms during the run, MB.
    pub rss_mb: f64,
}

impl Usage {
    /// CPUs busy on average.
    pub fn vcpu(&self) -> f64 {
        self.cpu_s / self.wall_s
    }
}

/// Runs `f` while sampling `pids`' CPU time and RSS.
pub fn measure_during<T>(
    pids: &[u32],
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, Vec<Usage>)> {
    let cpu0: Vec<f64> = pids
        .iter()
        .map(|p| cpu_seconds(*p))
        .collect::<Result<_, _>>()?;
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let (out, rss) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut sums = vec![0u64; pids.len()];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for (sum, pid) in sums.iter_mut().zip(pids) {
                    *sum += status_kib(*pid, "VmRSS").unwrap_or(0);
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            sums.into_iter()
                .map(|s| s as f64 / n.max(1) as f64 / 1024.0)
                .collect::<Vec<f64>>()
        });
        let out = f();
        stop.store(true, Ordering::Relaxed);
        (out, sampler.join().unwrap_or_default())
    });
    let wall_s = start.elapsed().as_secs_f64();
    let out = out?;
    let usage = pids
        .iter()
        .zip(cpu0)
        .zip(rss)
        .map(|((pid, c0), rss_mb)| {
            Ok(Usage {
                cpu_s: cpu_seconds(*pid)? - c0,
                wall_s,
                rss_mb,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((out, usage))
}
