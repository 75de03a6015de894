//! Background jobs: what kinds exist and the states a job goes through.

/// What a job does; stored as its `kind` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// An official-account callback event: record the identity, then resolve its unionid.
    CallbackEvent,
}

/// Where a job stands; stored as its `status` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Waiting to run, running under a lease, or waiting for its next retry.
    Pending,
    /// Finished; the row stays a while as the dedupe record for WeChat's retries.
    Done,
    /// Parked after too many attempts or a permanent error, for an operator to read.
    Dead,
}

impl JobKind {
    pub const ALL: [JobKind; 1] = [JobKind::CallbackEvent];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::CallbackEvent => "callback_event",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl JobStatus {
    pub const ALL: [JobStatus; 3] = [JobStatus::Pending, JobStatus::Done, JobStatus::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Done => "done",
            JobStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// After a failed attempt: retry later, or park the job for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Run again after this many seconds.
    After(i64),
    Park,
}

/// Attempts before a job is parked as dead.
pub const MAX_ATTEMPTS: i32 = 12;

/// The retry rule: exponential backoff of 2^attempts seconds, capped at ten minutes; parked
/// after [`MAX_ATTEMPTS`], or at once when the failure is permanent.
pub fn retry(attempts: i32, permanent: bool) -> Retry {
    if permanent || attempts >= MAX_ATTEMPTS {
        return Retry::Park;
    }
    Retry::After(2_i64.pow(attempts.clamp(0, 10) as u32).min(600))
}

/// The first pause of a worker after WeChat failed one of its jobs.
pub const FIRST_PAUSE_MS: u64 = 500;
/// The longest pause: a worker still tries WeChat twice a minute while it is down.
pub const MAX_PAUSE_MS: u64 = 30_000;

/// How long a worker waits before its next job after `failures` jobs in a row failed because
/// of WeChat (down, timing out, rate limiting us): none after a success, then 0.5 s doubling
/// up to 30 s. The failed job itself is retried on its own schedule ([`retry`]); the pause
/// keeps the other jobs from being claimed only to fail the same way, as fast as the database
/// allows.
pub fn pause_after(failures: u32) -> std::time::Duration {
    if failures == 0 {
        return std::time::Duration::ZERO;
    }
    let ms = FIRST_PAUSE_MS.saturating_mul(1 << (failures - 1).min(16));
    std::time::Duration::from_millis(ms.min(MAX_PAUSE_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_statuses_round_trip_through_their_stored_names() {
        for k in JobKind::ALL {
            assert_eq!(JobKind::parse(k.as_str()), Some(k));
        }
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobKind::parse("nope"), None);
        assert_eq!(JobStatus::parse("Pending"), None);
    }

    #[test]
    fn failed_jobs_back_off_exponentially_and_are_parked_at_the_limit() {
        let cases = [
            (0, false, Retry::After(1)),
            (1, false, Retry::After(2)),
            (5, false, Retry::After(32)),
            (9, false, Retry::After(512)),
            (10, false, Retry::After(600)),
            (11, false, Retry::After(600)),
            (12, false, Retry::Park),
            (40, false, Retry::Park),
            (-3, false, Retry::After(1)),
            (1, true, Retry::Park),
        ];
        for (attempts, permanent, want) in cases {
            assert_eq!(retry(attempts, permanent), want, "{attempts} {permanent}");
        }
    }

    #[test]
    fn a_worker_pauses_longer_after_each_failure_of_wechat_up_to_thirty_seconds() {
        let cases = [
            (0, 0),
            (1, 500),
            (2, 1_000),
            (3, 2_000),
            (6, 16_000),
            (7, 30_000),
            (8, 30_000),
            (40, 30_000),
            (u32::MAX, 30_000),
        ];
        for (failures, ms) in cases {
            assert_eq!(
                pause_after(failures),
                std::time::Duration::from_millis(ms),
                "{failures}"
            );
        }
    }
}
