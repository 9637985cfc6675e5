//! Client-side rate limiting shaped like ECS's own throttling: one token bucket per action
//! category, per account and region (ECS-NOTES.md). Every ECS call the operator makes first
//! takes a token from its category's bucket, so the operator alone never drives ECS into
//! throttling, and leaves the rest of the bucket to everything else the account runs.
//!
//! A call waits for its token *before* the SDK signs the request, so a long wait never
//! outlives a signature. A call ECS throttles anyway (the bucket is shared with other tools)
//! is retried by the SDK with backoff and counted as `throttled` in the metrics.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// ECS's throttling categories: each shares one token bucket per account and region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// Create/Delete/UpdateCluster, PutClusterCapacityProviders, UpdateClusterSettings.
    ClusterModify,
    /// DescribeClusters, ListClusters.
    ClusterRead,
    /// Register/DeregisterTaskDefinition.
    TaskDefinitionModify,
    /// DescribeTaskDefinition, ListTaskDefinitions, ListTaskDefinitionFamilies.
    TaskDefinitionRead,
    /// DeleteTaskDefinitions.
    TaskDefinitionDelete,
    /// TagResource, UntagResource.
    TagModify,
    /// ListTagsForResource.
    TagRead,
    /// Create/Delete/UpdateService.
    ServiceModify,
    /// DescribeServices, ListServices.
    ServiceRead,
}

impl Category {
    /// Every category.
    pub const ALL: [Category; 9] = [
        Category::ClusterModify,
        Category::ClusterRead,
        Category::TaskDefinitionModify,
        Category::TaskDefinitionRead,
        Category::TaskDefinitionDelete,
        Category::TagModify,
        Category::TagRead,
        Category::ServiceModify,
        Category::ServiceRead,
    ];

    /// The category of an ECS operation, by its API name.
    pub fn of(operation: &str) -> Option<Category> {
        Some(match operation {
            "CreateCluster"
            | "DeleteCluster"
            | "UpdateCluster"
            | "PutClusterCapacityProviders"
            | "UpdateClusterSettings" => Category::ClusterModify,
            "DescribeClusters" | "ListClusters" => Category::ClusterRead,
            "RegisterTaskDefinition" | "DeregisterTaskDefinition" => Category::TaskDefinitionModify,
            "DescribeTaskDefinition" | "ListTaskDefinitions" | "ListTaskDefinitionFamilies" => {
                Category::TaskDefinitionRead
            }
            "DeleteTaskDefinitions" => Category::TaskDefinitionDelete,
            "TagResource" | "UntagResource" => Category::TagModify,
            "ListTagsForResource" => Category::TagRead,
            "CreateService" | "DeleteService" | "UpdateService" => Category::ServiceModify,
            "DescribeServices" | "ListServices" => Category::ServiceRead,
            _ => return None,
        })
    }

    /// The name used on the command line and in metrics, e.g. `service-read`.
    pub fn name(self) -> &'static str {
        match self {
            Category::ClusterModify => "cluster-modify",
            Category::ClusterRead => "cluster-read",
            Category::TaskDefinitionModify => "task-definition-modify",
            Category::TaskDefinitionRead => "task-definition-read",
            Category::TaskDefinitionDelete => "task-definition-delete",
            Category::TagModify => "tag-modify",
            Category::TagRead => "tag-read",
            Category::ServiceModify => "service-modify",
            Category::ServiceRead => "service-read",
        }
    }

    /// ECS's documented bucket for this category (ECS-NOTES.md): burst, then per second.
    pub fn ecs_limit(self) -> Limit {
        let (burst, per_second) = match self {
            Category::ClusterModify => (20, 1.0),
            Category::ClusterRead => (50, 20.0),
            Category::TaskDefinitionModify => (20, 1.0),
            Category::TaskDefinitionRead => (50, 20.0),
            Category::TaskDefinitionDelete => (5, 1.0),
            Category::TagModify => (20, 10.0),
            Category::TagRead => (50, 20.0),
            Category::ServiceModify => (50, 5.0),
            Category::ServiceRead => (100, 20.0),
        };
        Limit { burst, per_second }
    }
}

/// One bucket's shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    /// Calls allowed at once from a full bucket.
    pub burst: u32,
    /// Calls per second sustained.
    pub per_second: f64,
}

/// The limits the operator keeps to: ECS's by default, each category overridable, or none.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimits {
    /// None: no client-side limiting at all.
    limits: Option<BTreeMap<Category, Limit>>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            limits: Some(Category::ALL.iter().map(|c| (*c, c.ecs_limit())).collect()),
        }
    }
}

impl RateLimits {
    /// No limiting (benchmarks of the operator's own overhead; accounts with raised limits).
    pub fn off() -> Self {
        Self { limits: None }
    }

    /// The limit of a category, None when limiting is off.
    pub fn get(&self, category: Category) -> Option<Limit> {
        self.limits.as_ref().and_then(|l| l.get(&category).copied())
    }
}

/// Parses `--ecs-rate-limits`: `ecs` (ECS's own limits), `off`, or ECS's limits with some
/// categories overridden: `service-read=50/10,task-definition-modify=10/0.5` (burst/per second).
impl FromStr for RateLimits {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "off" | "none" => return Ok(Self::off()),
            "" | "ecs" => return Ok(Self::default()),
            _ => {}
        }
        let mut limits = Self::default();
        let map = limits.limits.get_or_insert_with(BTreeMap::new);
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?}: expected category=burst/per-second"))?;
            let category = Category::ALL
                .into_iter()
                .find(|c| c.name() == name.trim())
                .ok_or_else(|| {
                    let names: Vec<_> = Category::ALL.iter().map(|c| c.name()).collect();
                    format!("{name:?} is not a category; one of {}", names.join(", "))
                })?;
            let (burst, per_second) = value
                .split_once('/')
                .ok_or_else(|| format!("{item:?}: expected burst/per-second, e.g. 20/1"))?;
            let burst: u32 = burst
                .trim()
                .parse()
                .map_err(|_| format!("{item:?}: burst must be a whole number"))?;
            let per_second: f64 = per_second
                .trim()
                .parse()
                .map_err(|_| format!("{item:?}: per-second must be a number"))?;
            if burst == 0 || per_second.is_nan() || per_second <= 0.0 {
                return Err(format!("{item:?}: burst and per-second must be above 0"));
            }
            map.insert(category, Limit { burst, per_second });
        }
        Ok(limits)
    }
}

impl fmt::Display for RateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.limits {
            None => f.write_str("off"),
            Some(map) => {
                let items: Vec<String> = map
                    .iter()
                    .map(|(c, l)| format!("{}={}/{}", c.name(), l.burst, l.per_second))
                    .collect();
                f.write_str(&items.join(","))
            }
        }
    }
}

/// How much one throttle lowers a bucket's rate.
const DECREASE: f64 = 0.5;
/// The least share of its configured rate a bucket keeps, however often ECS throttles.
const FLOOR_SHARE: f64 = 0.05;
/// How long a lowered rate takes to climb back to the configured one without a throttle.
pub const RECOVERY: Duration = Duration::from_secs(60);
/// Throttles closer together than this are one: the answers to one burst ECS refused.
const SAME_THROTTLE: Duration = Duration::from_secs(1);

/// How often a waiting call looks at its bucket's rate again.
const RECHECK: Duration = Duration::from_secs(1);

/// A reserved token: its call may go once the category's bucket has been filled this far.
struct Mark {
    category: Category,
    filled: f64,
}

/// Reports a category's current rate (calls per second), e.g. to /metrics.
pub type RateReport = Box<dyn Fn(Category, f64) + Send + Sync>;

/// The buckets of one account and region, shared by every object and kind that calls it.
///
/// Adaptive: ECS's buckets belong to the account and region, and other tools spend them
/// too. When ECS throttles a call despite the client-side bucket, that bucket's rate is
/// halved (down to 5% of its configured rate, once per second at most) and its tokens
/// spent; without throttles it climbs back linearly, to the configured rate (never above)
/// within a minute.
pub struct RateLimiter {
    buckets: BTreeMap<Category, Mutex<Bucket>>,
    report: Option<RateReport>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("buckets", &self.buckets)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Bucket {
    limit: Limit,
    /// Calls per second now: the limit's, or less after ECS throttled.
    rate: f64,
    /// May go below zero: each waiter reserves its token, so waiters are served in order.
    tokens: f64,
    refilled: Instant,
    /// Tokens added since the bucket was made: a waiting call's token is its own once this
    /// reaches the mark it was given (see [`RateLimiter::acquire`]).
    filled: f64,
    last_throttle: Option<Instant>,
}

impl Bucket {
    /// Lets the rate recover and refills the tokens at it, up to `now`: the rate climbs
    /// linearly to the limit's, so the tokens added are its average over the time.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        let full = self.limit.per_second;
        let climb = full / RECOVERY.as_secs_f64();
        let climbing = elapsed.min((full - self.rate) / climb);
        let recovered = self.rate + climb * climbing;
        let added = climbing * (self.rate + recovered) / 2.0 + (elapsed - climbing) * full;
        let before = self.tokens;
        self.tokens = (self.tokens + added).min(f64::from(self.limit.burst));
        self.filled += (self.tokens - before).max(0.0);
        self.rate = recovered.min(full);
        self.refilled = now.max(self.refilled);
    }
}

impl RateLimiter {
    /// Full buckets of the given limits.
    pub fn new(limits: &RateLimits) -> Self {
        let now = Instant::now();
        let buckets = Category::ALL
            .into_iter()
            .filter_map(|c| limits.get(c).map(|limit| (c, limit)))
            .map(|(c, limit)| {
                let bucket = Bucket {
                    limit,
                    rate: limit.per_second,
                    tokens: f64::from(limit.burst),
                    refilled: now,
                    filled: 0.0,
                    last_throttle: None,
                };
                (c, Mutex::new(bucket))
            })
            .collect();
        Self { buckets, report: None }
    }

    /// The same limiter, reporting each category's rate when it changes (and now).
    pub fn reporting(mut self, report: RateReport) -> Self {
        for (category, bucket) in &self.buckets {
            report(*category, bucket.lock().unwrap_or_else(|p| p.into_inner()).rate);
        }
        self.report = Some(report);
        self
    }

    /// Takes a token for one call of `operation`; returns how long the call had to wait.
    pub async fn acquire(&self, operation: &str) -> Duration {
        let started = Instant::now();
        let Some(mark) = self.reserve(operation, started) else {
            return Duration::ZERO;
        };
        loop {
            let wait = self.remaining(&mark, Instant::now());
            if wait.is_zero() {
                return started.elapsed();
            }
            // NB: the rate changes while calls wait: halved by throttles, then climbing back.
            // A wait worked out once, at a rate throttles had just brought to its floor, kept
            // calls asleep for minutes after the rate had recovered.
            tokio::time::sleep(wait.min(RECHECK)).await;
        }
    }

    /// Reserves a token at `now`: None when it may be used at once, else the bucket's
    /// fill mark at which it may.
    fn reserve(&self, operation: &str, now: Instant) -> Option<Mark> {
        let (category, bucket) = self.bucket(operation)?;
        let mut bucket = bucket.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(category, &mut bucket, now);
        bucket.tokens -= 1.0;
        (bucket.tokens < 0.0).then(|| Mark {
            category,
            filled: bucket.filled - bucket.tokens,
        })
    }

    /// How long until a reserved token may be used, at the rate of `now`.
    fn remaining(&self, mark: &Mark, now: Instant) -> Duration {
        let Some(bucket) = self.buckets.get(&mark.category) else {
            return Duration::ZERO;
        };
        let mut bucket = bucket.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(mark.category, &mut bucket, now);
        Duration::from_secs_f64((mark.filled - bucket.filled).max(0.0) / bucket.rate)
    }

    /// Refills `bucket` up to `now`, reporting its rate if that changed.
    fn refill(&self, category: Category, bucket: &mut Bucket, now: Instant) {
        let before = bucket.rate;
        bucket.refill(now);
        if bucket.rate != before {
            self.reported(category, bucket.rate);
        }
    }

    /// ECS throttled a call of `operation` at `now`: someone else spends the account's
    /// budget too, so this bucket slows down (see [`RateLimiter`]).
    pub fn throttled(&self, operation: &str, now: Instant) {
        let Some((category, bucket)) = self.bucket(operation) else {
            return;
        };
        let mut bucket = bucket.lock().unwrap_or_else(|p| p.into_inner());
        if bucket
            .last_throttle
            .is_some_and(|at| now.saturating_duration_since(at) < SAME_THROTTLE)
        {
            return;
        }
        bucket.refill(now);
        bucket.rate = (bucket.rate * DECREASE).max(bucket.limit.per_second * FLOOR_SHARE);
        bucket.tokens = bucket.tokens.min(0.0);
        bucket.last_throttle = Some(now);
        self.reported(category, bucket.rate);
    }

    /// The current rate of `category`, None when it is not limited.
    pub fn rate(&self, category: Category) -> Option<f64> {
        let bucket = self.buckets.get(&category)?;
        Some(bucket.lock().unwrap_or_else(|p| p.into_inner()).rate)
    }

    fn bucket(&self, operation: &str) -> Option<(Category, &Mutex<Bucket>)> {
        let category = Category::of(operation)?;
        Some((category, self.buckets.get(&category)?))
    }

    fn reported(&self, category: Category, rate: f64) {
        if let Some(report) = &self.report {
            report(category, rate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl RateLimiter {
        /// How long a call that reserves its token at `now` waits, at the rate of `now`.
        fn wait_at(&self, operation: &str, now: Instant) -> Duration {
            self.reserve(operation, now)
                .map_or(Duration::ZERO, |mark| self.remaining(&mark, now))
        }
    }

    #[test]
    fn a_waiting_call_goes_at_the_recovered_rate_not_the_throttled_one() {
        let limiter = RateLimiter::new(&RateLimits::default());
        let start = Instant::now();
        let at = |seconds: f64| start + Duration::from_secs_f64(seconds);
        // ECS throttles registrations five seconds running: the rate falls to its floor
        for second in 0..5 {
            limiter.throttled("RegisterTaskDefinition", at(second as f64 * 1.1));
        }
        assert_eq!(limiter.rate(Category::TaskDefinitionModify), Some(0.05));
        // ten calls queue up; at the floor the tenth would wait over three minutes
        let marks: Vec<Mark> = (0..10)
            .filter_map(|_| limiter.reserve("RegisterTaskDefinition", at(4.4)))
            .collect();
        assert_eq!(marks.len(), 10);
        let tenth = &marks[9];
        assert!(limiter.remaining(tenth, at(4.4)) > Duration::from_secs(180));
        // the rate climbs back within a minute, and the calls go with it
        assert!(limiter.remaining(tenth, at(34.4)) < Duration::from_secs(10));
        assert_eq!(limiter.remaining(tenth, at(64.4)), Duration::ZERO);
    }

    #[test]
    fn a_burst_is_free_and_then_calls_are_spaced_at_the_sustained_rate() {
        let limiter = RateLimiter::new(&RateLimits::default());
        let start = Instant::now();
        // task definition registration: burst 20, then 1 per second
        for _ in 0..20 {
            assert_eq!(limiter.wait_at("RegisterTaskDefinition", start), Duration::ZERO);
        }
        let waits: Vec<u64> = (0..3)
            .map(|_| limiter.wait_at("RegisterTaskDefinition", start).as_millis() as u64)
            .collect();
        assert_eq!(waits, vec![1000, 2000, 3000]);
        // the same category is shared by deregistration; other categories are untouched
        assert_eq!(limiter.wait_at("DeregisterTaskDefinition", start).as_millis(), 4000);
        assert_eq!(limiter.wait_at("DescribeServices", start), Duration::ZERO);
    }

    #[test]
    fn the_bucket_refills_over_time_up_to_its_burst() {
        let limiter = RateLimiter::new(&RateLimits::default());
        let start = Instant::now();
        for _ in 0..50 {
            limiter.wait_at("CreateService", start);
        }
        // 5 per second: 2 s later, 10 calls are free and the 11th waits 0.2 s
        let later = start + Duration::from_secs(2);
        for _ in 0..10 {
            assert_eq!(limiter.wait_at("UpdateService", later), Duration::ZERO);
        }
        assert_eq!(limiter.wait_at("DeleteService", later).as_millis(), 200);
        // an hour idle refills to the burst, not beyond
        let much_later = later + Duration::from_secs(3600);
        let free = (0..200)
            .take_while(|_| limiter.wait_at("CreateService", much_later).is_zero())
            .count();
        assert_eq!(free, 50);
    }

    #[test]
    fn limits_parse_from_the_command_line() {
        assert_eq!("ecs".parse::<RateLimits>(), Ok(RateLimits::default()));
        assert_eq!("off".parse::<RateLimits>(), Ok(RateLimits::off()));
        let custom: RateLimits = "service-read=50/10, task-definition-modify=10/0.5".parse().unwrap();
        assert_eq!(
            custom.get(Category::ServiceRead),
            Some(Limit {
                burst: 50,
                per_second: 10.0
            })
        );
        assert_eq!(
            custom.get(Category::TaskDefinitionModify),
            Some(Limit {
                burst: 10,
                per_second: 0.5
            })
        );
        assert_eq!(
            custom.get(Category::ClusterRead),
            Some(Category::ClusterRead.ecs_limit())
        );
        assert!(
            "service-reads=1/1"
                .parse::<RateLimits>()
                .unwrap_err()
                .contains("not a category")
        );
        assert!("service-read=0/1".parse::<RateLimits>().is_err());
        assert!("service-read=5".parse::<RateLimits>().is_err());
        assert_eq!(custom.to_string().parse::<RateLimits>(), Ok(custom));
    }

    #[test]
    fn a_throttle_halves_the_rate_once_per_burst_and_a_clean_minute_restores_it() {
        let limiter = RateLimiter::new(&RateLimits::default());
        let start = Instant::now();
        let rate = || limiter.rate(Category::ServiceRead).expect("limited");
        assert_eq!(rate(), 20.0);
        limiter.throttled("DescribeServices", start);
        assert_eq!(rate(), 10.0);
        // the rest of the same refused burst counts once
        limiter.throttled("ListServices", start + Duration::from_millis(300));
        assert_eq!(rate(), 10.0);
        // the bucket was spent: the next call waits for a token at the lowered rate
        assert_eq!(limiter.wait_at("DescribeServices", start).as_millis(), 100);
        limiter.throttled("DescribeServices", start + Duration::from_secs(2));
        assert!((rate() - 5.0).abs() < 0.5, "{}", rate());
        // other categories keep their rate
        assert_eq!(limiter.rate(Category::ServiceModify), Some(5.0));
        // half a minute without a throttle: half way back; a minute: all the way, not beyond
        limiter.wait_at("DescribeServices", start + Duration::from_secs(32));
        assert!((rate() - 15.0).abs() < 0.5, "{}", rate());
        limiter.wait_at("DescribeServices", start + Duration::from_secs(600));
        assert_eq!(rate(), 20.0);
    }

    #[test]
    fn throttles_never_lower_a_rate_below_a_twentieth() {
        let limiter = RateLimiter::new(&RateLimits::default());
        let start = Instant::now();
        for second in 0..20 {
            limiter.throttled("CreateService", start + Duration::from_secs(second * 2));
        }
        assert_eq!(limiter.rate(Category::ServiceModify), Some(0.25));
    }

    #[test]
    fn with_limits_off_nothing_waits() {
        let limiter = RateLimiter::new(&RateLimits::off());
        let now = Instant::now();
        assert!((0..1000).all(|_| limiter.wait_at("RegisterTaskDefinition", now).is_zero()));
    }
}
