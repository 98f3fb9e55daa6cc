//! A group's backlog by Little's law, as `info --rate` and `top` show it.

/// W = L/λ: seconds a record appended now waits before the group reaches it, at today's rates;
/// `None` without appends.
pub fn wait_secs(lag: u64, lambda: Option<f64>) -> Option<f64> {
    lambda.filter(|&l| l > 0.0).map(|l| lag as f64 / l)
}

/// L/(μ−λ): seconds until the group has caught up; `None` while it falls behind (μ ≤ λ with a
/// backlog) or while a rate is unknown.
pub fn drain_secs(lag: u64, mu: Option<f64>, lambda: Option<f64>) -> Option<f64> {
    if lag == 0 {
        return Some(0.0);
    }
    let net = mu? - lambda?;
    (net > 0.0).then(|| lag as f64 / net)
}
