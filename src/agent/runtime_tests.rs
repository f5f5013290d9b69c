//! The agent's tick grid in virtual time (tokio's paused clock): every service ticks at once, then
//! on the grid `origin + k * period` shared by all services of the same period, and a tick made
//! late by a slow gauge is neither made up for in a burst nor allowed to shift the grid.

use std::time::Duration;

use tokio::time::Instant;

use super::tick_grid;

const PERIOD: Duration = Duration::from_secs(10);

/// Seconds since `origin`, to the millisecond (virtual time is exact; this only reads well).
fn at(origin: Instant, t: Instant) -> f64 {
    (t - origin).as_millis() as f64 / 1000.0
}

#[tokio::test(start_paused = true)]
async fn a_service_started_off_the_grid_ticks_at_once_then_on_the_grid() {
    let origin = Instant::now();
    // The service's setup took 23.5 s (a slow cgroup walk): it starts between grid points.
    tokio::time::sleep(Duration::from_millis(23_500)).await;
    let mut grid = tick_grid(origin, PERIOD);
    let mut ticks = Vec::new();
    for _ in 0..3 {
        grid.tick().await;
        ticks.push(at(origin, Instant::now()));
    }
    assert_eq!(ticks, [23.5, 30.0, 40.0], "at once, then on the grid");
}

#[tokio::test(start_paused = true)]
async fn services_of_the_same_period_wake_together_whenever_they_started() {
    let origin = Instant::now();
    let mut early = tick_grid(origin, PERIOD);
    early.tick().await;
    tokio::time::sleep(Duration::from_millis(4_200)).await;
    let mut late = tick_grid(origin, PERIOD);
    late.tick().await;
    assert_eq!(
        at(origin, Instant::now()),
        4.2,
        "the late one's first tick is at once"
    );
    for k in 1..=3 {
        early.tick().await;
        let a = at(origin, Instant::now());
        late.tick().await;
        let b = at(origin, Instant::now());
        assert_eq!((a, b), (10.0 * k as f64, 10.0 * k as f64), "tick {k}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_tick_made_late_by_a_slow_gauge_is_not_made_up_for_and_the_grid_holds() {
    let origin = Instant::now();
    let mut grid = tick_grid(origin, PERIOD);
    grid.tick().await;
    assert_eq!(at(origin, Instant::now()), 0.0);
    // The tick at 0 s takes 27 s (a Kamailio that does not answer): 10 s and 20 s are missed.
    tokio::time::sleep(Duration::from_secs(27)).await;
    let mut ticks = Vec::new();
    for _ in 0..3 {
        grid.tick().await;
        ticks.push(at(origin, Instant::now()));
    }
    // One tick for both missed ones, at once; then 30 s and 40 s, on the grid.
    assert_eq!(ticks, [27.0, 30.0, 40.0]);
}
