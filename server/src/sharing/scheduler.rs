//! Pure: what the GPU scheduler does next, from (inventory, holdings, queue, limits, now).
//! No clock, no database: the service feeds it a snapshot and applies its decisions, each one
//! conditional on the rows it read (so two Berth processes never apply one twice).

use std::collections::{BTreeSet, HashMap};

/// A GPU as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    pub uuid: String,
    pub index: u32,
    /// None: not read this time (its holdings are then never counted idle).
    pub utilization_percent: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldingKind {
    Claim,
    Lease,
}

impl HoldingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldingKind::Claim => "claim",
            HoldingKind::Lease => "lease",
        }
    }
}

/// An active claim or lease on one GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct Holding {
    pub id: i64,
    pub user_id: i64,
    pub gpu_uuid: String,
    pub ends_at: i64,
    pub warnings_given: u32,
    pub idle_since: Option<i64>,
    pub idle_warned_at: Option<i64>,
}

/// A request waiting in the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: i64,
    pub user_id: i64,
    pub count: u32,
    /// A particular GPU, or any `count` free ones.
    pub gpu_uuid: Option<String>,
    pub duration_seconds: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_gpus: u32,
    pub max_lease_seconds: i64,
    pub max_queued: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Seconds before the end at which a warning goes out, largest first.
    pub warn_before: Vec<i64>,
    /// 0: idle GPUs are never released.
    pub idle_release_after: i64,
    pub idle_utilization_percent: u32,
    pub idle_warning: i64,
}

/// Everything the scheduler looks at. `queue` is in serving order.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub gpus: Vec<Gpu>,
    pub holdings: Vec<Holding>,
    pub queue: Vec<Request>,
    pub limits: HashMap<i64, Limits>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The holding reached its end.
    Expire { holding: i64 },
    /// The n-th warning before the end (`warnings_given` becomes `warning`).
    WarnExpiry { holding: i64, warning: u32, seconds_left: i64 },
    /// The GPU went quiet (or busy again: `since` None).
    MarkIdle { holding: i64, since: Option<i64> },
    WarnIdle { holding: i64 },
    ReleaseIdle { holding: i64 },
    /// Serve a queued request with these GPUs until `ends_at`.
    Grant { request: i64, user_id: i64, gpus: Vec<String>, ends_at: i64 },
}

/// What a wait for something idle is at (shared by idle GPUs and idle workspaces): warned
/// `warning` seconds before acting, and never acting on someone who was not warned that long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleStep {
    Quiet,
    Warn,
    Act,
}

/// The warning actually given: at most half the idle time, so a short idle time (an admin's
/// per-user half hour) never warns something that is in use.
pub fn effective_warning(after: i64, warning: i64) -> i64 {
    warning.clamp(0, after / 2)
}

/// `idle_for`: how long it has been idle; `warned_for`: how long ago its warning went out.
pub fn idle_step(idle_for: i64, warned_for: Option<i64>, after: i64, warning: i64) -> IdleStep {
    let warning = effective_warning(after, warning);
    if after <= 0 || idle_for <= 0 || idle_for < after - warning {
        return IdleStep::Quiet;
    }
    match warned_for {
        None => IdleStep::Warn,
        Some(w) if idle_for >= after && w >= warning => IdleStep::Act,
        Some(_) => IdleStep::Quiet,
    }
}

pub fn decide(s: &Snapshot, policy: &Policy, now: i64) -> Vec<Decision> {
    let mut decisions = Vec::new();
    let mut freed: BTreeSet<&str> = BTreeSet::new();
    let utilization: HashMap<&str, Option<u32>> = s.gpus.iter().map(|g| (g.uuid.as_str(), g.utilization_percent)).collect();

    for h in &s.holdings {
        if h.ends_at <= now {
            decisions.push(Decision::Expire { holding: h.id });
            freed.insert(&h.gpu_uuid);
            continue;
        }
        // The warnings whose time has come; a late tick gives only the last of them.
        let due = policy.warn_before.iter().filter(|&&before| h.ends_at - now <= before).count() as u32;
        if due > h.warnings_given {
            decisions.push(Decision::WarnExpiry { holding: h.id, warning: due, seconds_left: h.ends_at - now });
        }
        if policy.idle_release_after <= 0 {
            continue;
        }
        let quiet = match utilization.get(h.gpu_uuid.as_str()) {
            Some(Some(u)) => *u < policy.idle_utilization_percent,
            _ => false,
        };
        let idle_since = match (quiet, h.idle_since) {
            (true, Some(since)) => since,
            (true, None) => {
                decisions.push(Decision::MarkIdle { holding: h.id, since: Some(now) });
                now
            }
            (false, since) => {
                if since.is_some() || h.idle_warned_at.is_some() {
                    decisions.push(Decision::MarkIdle { holding: h.id, since: None });
                }
                continue;
            }
        };
        let warned_for = h.idle_warned_at.map(|at| now - at);
        match idle_step(now - idle_since, warned_for, policy.idle_release_after, policy.idle_warning) {
            IdleStep::Quiet => {}
            IdleStep::Warn => decisions.push(Decision::WarnIdle { holding: h.id }),
            IdleStep::Act => {
                decisions.push(Decision::ReleaseIdle { holding: h.id });
                freed.insert(&h.gpu_uuid);
            }
        }
    }

    // The GPUs free once this round's releases are applied, lowest index first.
    let held: BTreeSet<&str> = s.holdings.iter().map(|h| h.gpu_uuid.as_str()).filter(|g| !freed.contains(g)).collect();
    let mut by_index: Vec<&Gpu> = s.gpus.iter().collect();
    by_index.sort_by_key(|g| g.index);
    let mut free: Vec<&str> = by_index.iter().map(|g| g.uuid.as_str()).filter(|g| !held.contains(g)).collect();
    let mut holding_count: HashMap<i64, u32> = HashMap::new();
    for h in &s.holdings {
        if !freed.contains(h.gpu_uuid.as_str()) {
            *holding_count.entry(h.user_id).or_default() += 1;
        }
    }
    // First come, first served: a request that cannot be served keeps the free GPUs it could
    // use for itself, so a later, smaller request never starves it. One held back by its own
    // user's limit keeps nothing and blocks no one.
    for r in &s.queue {
        let limits = s.limits.get(&r.user_id).copied().unwrap_or(UNLIMITED);
        let holds = holding_count.get(&r.user_id).copied().unwrap_or(0);
        if holds + r.count > limits.max_gpus {
            continue;
        }
        let chosen: Vec<&str> = match &r.gpu_uuid {
            Some(wanted) => free.iter().copied().filter(|g| g == wanted).collect(),
            None => free.iter().copied().take(r.count as usize).collect(),
        };
        let wanted = if r.gpu_uuid.is_some() { 1 } else { r.count as usize };
        if chosen.len() < wanted {
            free.retain(|g| !chosen.contains(g));
            continue;
        }
        free.retain(|g| !chosen.contains(g));
        *holding_count.entry(r.user_id).or_default() += chosen.len() as u32;
        let duration = r.duration_seconds.min(limits.max_lease_seconds);
        decisions.push(Decision::Grant {
            request: r.id,
            user_id: r.user_id,
            gpus: chosen.into_iter().map(str::to_string).collect(),
            ends_at: now + duration,
        });
    }
    decisions
}

const UNLIMITED: Limits = Limits { max_gpus: u32::MAX, max_lease_seconds: i64::MAX, max_queued: u32::MAX };

/// Why a request is refused before it is queued.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("ask for at least one GPU")]
    NoGpusAsked,
    #[error("this host has no GPUs to share")]
    NoGpusHere,
    #[error("this host has {have} GPU(s); you asked for {asked}")]
    MoreThanHere { asked: u32, have: usize },
    #[error("there is no GPU {0} on this host")]
    UnknownGpu(String),
    #[error("you may hold at most {max} GPU(s) at once; you hold or wait for {holds} and asked for {asked}")]
    OverGpuLimit { max: u32, holds: u32, asked: u32 },
    #[error("you may have at most {0} request(s) waiting")]
    OverQueueLimit(u32),
    #[error("the longest lease here is {max_hours} h")]
    TooLong { max_hours: f64 },
    #[error("a lease lasts at least a minute")]
    TooShort,
}

/// Checks a new request against the user's limits (`holds`: GPUs held now, `waiting`: the
/// user's queued requests and the GPUs they ask for).
pub fn admit(r: &Request, gpus: &[Gpu], holds: u32, waiting: (u32, u32), limits: Limits) -> Result<(), Refusal> {
    if r.count == 0 {
        return Err(Refusal::NoGpusAsked);
    }
    if gpus.is_empty() {
        return Err(Refusal::NoGpusHere);
    }
    if let Some(uuid) = &r.gpu_uuid {
        if !gpus.iter().any(|g| &g.uuid == uuid) {
            return Err(Refusal::UnknownGpu(uuid.clone()));
        }
    } else if r.count as usize > gpus.len() {
        return Err(Refusal::MoreThanHere { asked: r.count, have: gpus.len() });
    }
    if r.duration_seconds < 60 {
        return Err(Refusal::TooShort);
    }
    if r.duration_seconds > limits.max_lease_seconds {
        return Err(Refusal::TooLong { max_hours: limits.max_lease_seconds as f64 / 3600.0 });
    }
    let (queued, queued_gpus) = waiting;
    if holds + queued_gpus + r.count > limits.max_gpus {
        return Err(Refusal::OverGpuLimit { max: limits.max_gpus, holds: holds + queued_gpus, asked: r.count });
    }
    if queued >= limits.max_queued {
        return Err(Refusal::OverQueueLimit(limits.max_queued));
    }
    Ok(())
}

/// A holding may be extended while nobody waits, up to the longest lease from now.
pub fn extension_end(h: &Holding, extra_seconds: i64, queue_len: usize, limits: Limits, now: i64) -> Result<i64, &'static str> {
    if queue_len > 0 {
        return Err("someone is waiting for a GPU: release it when you are done instead");
    }
    if extra_seconds <= 0 {
        return Err("extend by a positive time");
    }
    let end = h.ends_at.max(now) + extra_seconds;
    if end - now > limits.max_lease_seconds {
        return Err("that is longer than the longest lease here");
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "GPU-a";
    const B: &str = "GPU-b";

    fn gpus(util: [u32; 2]) -> Vec<Gpu> {
        vec![
            Gpu { uuid: A.into(), index: 0, utilization_percent: Some(util[0]) },
            Gpu { uuid: B.into(), index: 1, utilization_percent: Some(util[1]) },
        ]
    }

    fn policy() -> Policy {
        Policy { warn_before: vec![3600, 600], idle_release_after: 7200, idle_utilization_percent: 5, idle_warning: 900 }
    }

    fn holding(id: i64, user: i64, gpu: &str, ends_at: i64) -> Holding {
        Holding { id, user_id: user, gpu_uuid: gpu.into(), ends_at, warnings_given: 0, idle_since: None, idle_warned_at: None }
    }

    fn request(id: i64, user: i64, count: u32) -> Request {
        Request { id, user_id: user, count, gpu_uuid: None, duration_seconds: 3600 }
    }

    fn limits(max_gpus: u32) -> Limits {
        Limits { max_gpus, max_lease_seconds: 86_400, max_queued: 2 }
    }

    fn grants(d: &[Decision]) -> Vec<(i64, Vec<String>)> {
        d.iter()
            .filter_map(|d| match d {
                Decision::Grant { request, gpus, .. } => Some((*request, gpus.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn two_users_get_one_gpu_each_and_a_third_waits() {
        let s = Snapshot { gpus: gpus([50, 50]), queue: vec![request(1, 10, 1), request(2, 20, 1), request(3, 30, 1)], ..Default::default() };
        let d = decide(&s, &policy(), 1000);
        assert_eq!(grants(&d), vec![(1, vec![A.to_string()]), (2, vec![B.to_string()])]);
        assert!(d.contains(&Decision::Grant { request: 1, user_id: 10, gpus: vec![A.into()], ends_at: 4600 }));
    }

    #[test]
    fn an_ended_lease_frees_its_gpu_for_the_next_in_line_in_the_same_round() {
        let s = Snapshot {
            gpus: gpus([50, 50]),
            holdings: vec![holding(7, 10, A, 1000), holding(8, 20, B, 5000)],
            queue: vec![request(3, 30, 1)],
            ..Default::default()
        };
        let d = decide(&s, &policy(), 1000);
        assert!(d.contains(&Decision::Expire { holding: 7 }));
        assert_eq!(grants(&d), vec![(3, vec![A.to_string()])]);
        // One second earlier nothing ends and nothing is granted.
        let d = decide(&s, &policy(), 999);
        assert!(grants(&d).is_empty());
        assert!(!d.contains(&Decision::Expire { holding: 7 }));
    }

    #[test]
    fn a_big_request_first_in_line_is_not_starved_by_smaller_ones_behind_it() {
        let s = Snapshot {
            gpus: gpus([50, 50]),
            holdings: vec![holding(7, 10, A, 9000)],
            queue: vec![request(1, 20, 2), request(2, 30, 1)],
            ..Default::default()
        };
        assert!(grants(&decide(&s, &policy(), 1000)).is_empty(), "GPU b waits for the two-GPU request ahead");
        // When A ends, the two-GPU request gets both.
        let d = decide(&s, &policy(), 9000);
        assert_eq!(grants(&d), vec![(1, vec![A.to_string(), B.to_string()])]);
    }

    #[test]
    fn a_request_held_back_by_its_own_limit_blocks_no_one() {
        let mut s = Snapshot {
            gpus: gpus([50, 50]),
            holdings: vec![holding(7, 10, A, 9000)],
            queue: vec![request(1, 10, 1), request(2, 30, 1)],
            ..Default::default()
        };
        s.limits.insert(10, limits(1));
        assert_eq!(grants(&decide(&s, &policy(), 1000)), vec![(2, vec![B.to_string()])]);
    }

    #[test]
    fn a_request_for_a_particular_gpu_waits_for_it_and_leaves_the_others_to_the_rest() {
        let mut wants_a = request(1, 20, 1);
        wants_a.gpu_uuid = Some(A.into());
        let s = Snapshot {
            gpus: gpus([50, 50]),
            holdings: vec![holding(7, 10, A, 9000)],
            queue: vec![wants_a, request(2, 30, 1)],
            ..Default::default()
        };
        assert_eq!(grants(&decide(&s, &policy(), 1000)), vec![(2, vec![B.to_string()])]);
    }

    #[test]
    fn one_user_cannot_take_every_gpu_while_another_waits() {
        let mut s = Snapshot { gpus: gpus([50, 50]), queue: vec![request(1, 10, 1), request(2, 10, 1), request(3, 20, 1)], ..Default::default() };
        s.limits.insert(10, limits(1));
        s.limits.insert(20, limits(1));
        assert_eq!(grants(&decide(&s, &policy(), 0)), vec![(1, vec![A.to_string()]), (3, vec![B.to_string()])]);
    }

    #[test]
    fn a_grant_never_runs_past_the_users_longest_lease() {
        let mut s = Snapshot { gpus: gpus([50, 50]), queue: vec![request(1, 10, 1)], ..Default::default() };
        s.queue[0].duration_seconds = 100_000;
        s.limits.insert(10, Limits { max_gpus: 2, max_lease_seconds: 7200, max_queued: 1 });
        assert!(decide(&s, &policy(), 50).contains(&Decision::Grant { request: 1, user_id: 10, gpus: vec![A.into()], ends_at: 7250 }));
    }

    #[test]
    fn warnings_go_out_once_each_and_a_late_round_gives_only_the_last() {
        let mut h = holding(7, 10, A, 10_000);
        let s = |h: &Holding| Snapshot { gpus: gpus([50, 50]), holdings: vec![h.clone()], ..Default::default() };
        assert!(decide(&s(&h), &policy(), 10_000 - 3601).is_empty());
        assert_eq!(decide(&s(&h), &policy(), 10_000 - 3600), vec![Decision::WarnExpiry { holding: 7, warning: 1, seconds_left: 3600 }]);
        h.warnings_given = 1;
        assert!(decide(&s(&h), &policy(), 10_000 - 601).is_empty(), "the first warning is not repeated");
        assert_eq!(decide(&s(&h), &policy(), 10_000 - 300), vec![Decision::WarnExpiry { holding: 7, warning: 2, seconds_left: 300 }]);
        h.warnings_given = 0;
        assert_eq!(decide(&s(&h), &policy(), 10_000 - 300), vec![Decision::WarnExpiry { holding: 7, warning: 2, seconds_left: 300 }]);
        h.warnings_given = 2;
        assert_eq!(decide(&s(&h), &policy(), 10_000), vec![Decision::Expire { holding: 7 }]);
    }

    #[test]
    fn an_idle_gpu_is_warned_then_released_and_the_next_request_gets_it() {
        let mut h = holding(7, 10, B, 1_000_000);
        // A is held and busy, B is held and quiet (3 %); user 20 waits.
        let s = |h: &Holding| Snapshot {
            gpus: gpus([50, 3]),
            holdings: vec![h.clone(), holding(8, 30, A, 1_000_000)],
            queue: vec![request(4, 20, 1)],
            limits: HashMap::new(),
        };
        assert_eq!(decide(&s(&h), &policy(), 0), vec![Decision::MarkIdle { holding: 7, since: Some(0) }]);
        h.idle_since = Some(0);
        assert!(decide(&s(&h), &policy(), 7200 - 901).is_empty());
        assert_eq!(decide(&s(&h), &policy(), 7200 - 900), vec![Decision::WarnIdle { holding: 7 }]);
        h.idle_warned_at = Some(7200 - 900);
        assert!(decide(&s(&h), &policy(), 7199).is_empty());
        let d = decide(&s(&h), &policy(), 7200);
        assert_eq!(d, vec![Decision::ReleaseIdle { holding: 7 }, Decision::Grant { request: 4, user_id: 20, gpus: vec![B.into()], ends_at: 10_800 }]);
    }

    #[test]
    fn a_gpu_busy_again_clears_its_idle_mark_and_warning() {
        let mut h = holding(7, 10, A, 1_000_000);
        h.idle_since = Some(0);
        h.idle_warned_at = Some(6300);
        let s = Snapshot { gpus: gpus([80, 0]), holdings: vec![h], ..Default::default() };
        assert_eq!(decide(&s, &policy(), 7000), vec![Decision::MarkIdle { holding: 7, since: None }]);
    }

    #[test]
    fn a_gpu_not_read_is_never_counted_idle() {
        let mut h = holding(7, 10, A, 1_000_000);
        h.idle_since = Some(0);
        let mut g = gpus([0, 0]);
        g[0].utilization_percent = None;
        let s = Snapshot { gpus: g, holdings: vec![h], ..Default::default() };
        assert_eq!(decide(&s, &policy(), 100_000), vec![Decision::MarkIdle { holding: 7, since: None }]);
    }

    #[test]
    fn idle_steps_warn_first_and_act_only_after_the_whole_warning() {
        assert_eq!(idle_step(100, None, 0, 10), IdleStep::Quiet, "0: never");
        assert_eq!(idle_step(89, None, 100, 10), IdleStep::Quiet);
        assert_eq!(idle_step(90, None, 100, 10), IdleStep::Warn);
        assert_eq!(idle_step(100, Some(5), 100, 10), IdleStep::Quiet, "warned late: the user still gets the whole warning");
        assert_eq!(idle_step(105, Some(10), 100, 10), IdleStep::Act);
        assert_eq!(idle_step(500, None, 100, 10), IdleStep::Warn, "never acts unwarned");
        // A warning as long as the idle time would warn what is in use: it is halved.
        assert_eq!(idle_step(0, None, 1800, 1800), IdleStep::Quiet, "in use now: no warning");
        assert_eq!(idle_step(899, None, 1800, 1800), IdleStep::Quiet);
        assert_eq!(idle_step(900, None, 1800, 1800), IdleStep::Warn);
        assert_eq!(idle_step(1800, Some(900), 1800, 1800), IdleStep::Act);
    }

    #[test]
    fn requests_are_checked_against_the_limits() {
        let g = gpus([0, 0]);
        let l = Limits { max_gpus: 2, max_lease_seconds: 7200, max_queued: 1 };
        assert_eq!(admit(&request(1, 10, 1), &g, 0, (0, 0), l), Ok(()));
        assert_eq!(admit(&request(1, 10, 0), &g, 0, (0, 0), l), Err(Refusal::NoGpusAsked));
        assert_eq!(admit(&request(1, 10, 1), &[], 0, (0, 0), l), Err(Refusal::NoGpusHere));
        assert_eq!(admit(&request(1, 10, 3), &g, 0, (0, 0), l), Err(Refusal::MoreThanHere { asked: 3, have: 2 }));
        assert_eq!(admit(&request(1, 10, 1), &g, 2, (0, 0), l), Err(Refusal::OverGpuLimit { max: 2, holds: 2, asked: 1 }));
        assert_eq!(admit(&request(1, 10, 1), &g, 0, (1, 1), l), Err(Refusal::OverQueueLimit(1)));
        let mut long = request(1, 10, 1);
        long.duration_seconds = 7201;
        assert_eq!(admit(&long, &g, 0, (0, 0), l), Err(Refusal::TooLong { max_hours: 2.0 }));
        let mut other = request(1, 10, 1);
        other.gpu_uuid = Some("GPU-z".into());
        assert_eq!(admit(&other, &g, 0, (0, 0), l), Err(Refusal::UnknownGpu("GPU-z".into())));
    }

    #[test]
    fn a_holding_is_extended_only_while_nobody_waits_and_within_the_longest_lease() {
        let h = holding(7, 10, A, 2000);
        let l = Limits { max_gpus: 2, max_lease_seconds: 7200, max_queued: 1 };
        assert_eq!(extension_end(&h, 3600, 0, l, 1000), Ok(5600));
        assert!(extension_end(&h, 3600, 1, l, 1000).is_err());
        assert!(extension_end(&h, 7200, 0, l, 1000).is_err());
        assert!(extension_end(&h, 0, 0, l, 1000).is_err());
    }
}
