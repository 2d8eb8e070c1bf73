//! Projection lag: the time from a send's response until the `messages` projection had
//! applied the send's position. A watcher records the projection's position over time while
//! the load runs. Afterwards each send is matched with the first recorded moment at or past
//! its position.
//!
//! With PostgreSQL the watcher LISTENs on `projection_positions`, which a projector notifies
//! (`<projection>:<position>`) when it commits, so the moment is when the notification reached
//! the benchmark. With the embedded store, which has no `NOTIFY`, the watcher polls
//! `GET /ready` every [`READY_POLL_INTERVAL`], so each lag is late by up to one interval plus
//! one `/ready` round trip.

use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Deserialize;
use sqlx::postgres::PgListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::load::{Acknowledged, new_latency_histogram};

/// The PostgreSQL channel that projectors notify on commit.
const POSITIONS_CHANNEL: &str = "projection_positions";

/// The projection that applies `MessageSent`.
const MESSAGES_PROJECTION: &str = "messages";

/// How often the embedded backend's `/ready` is polled.
pub const READY_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// The method that observed the projection's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagSampling {
    /// Every commit's `NOTIFY`, as it arrived.
    Notifications,
    /// `GET /ready` polled every [`READY_POLL_INTERVAL`].
    ReadyPolling,
}

impl LagSampling {
    pub fn describe(self) -> String {
        match self {
            LagSampling::Notifications => {
                format!("LISTEN {POSITIONS_CHANNEL}: the moment each commit's notification arrived")
            }
            LagSampling::ReadyPolling => format!(
                "GET /ready polled every {} ms: coarser, late by up to one interval plus a round trip",
                READY_POLL_INTERVAL.as_millis()
            ),
        }
    }
}

/// When the projection was first seen at a position.
#[derive(Debug, Clone, Copy)]
struct Observation {
    position: u64,
    observed_at: Instant,
}

/// The watcher task's records, returned when it stops.
struct Observations {
    observations: Vec<Observation>,
    /// Times the LISTEN connection was lost and reopened, or a `/ready` poll returned no
    /// `messages` position. Commits that happen meanwhile are seen late, so the sends they
    /// covered get a later moment.
    failures: u64,
}

/// A background task that records the `messages` projection's position over time.
pub struct ProjectionWatch {
    pub sampling: LagSampling,
    latest: watch::Receiver<u64>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<Observations>>,
}

impl ProjectionWatch {
    /// Starts listening; returns once `LISTEN` is in effect, so no commit after this call is
    /// missed.
    pub async fn listen(database_url: &str) -> anyhow::Result<ProjectionWatch> {
        let mut listener = PgListener::connect(database_url)
            .await
            .context("failed to connect the projection-lag listener to PostgreSQL")?;
        listener
            .listen(POSITIONS_CHANNEL)
            .await
            .with_context(|| format!("failed to LISTEN on {POSITIONS_CHANNEL}"))?;
        let (latest_sender, latest) = watch::channel(0);
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut recorded = Observations {
                observations: Vec::with_capacity(1 << 16),
                failures: 0,
            };
            loop {
                let received = tokio::select! {
                    _ = &mut stopped => return Ok(recorded),
                    received = listener.try_recv() => received,
                };
                let observed_at = Instant::now();
                let Some(notification) = received.context("the projection-lag listener failed")?
                else {
                    recorded.failures += 1;
                    continue;
                };
                let Some((projection, position)) = notification.payload().split_once(':') else {
                    continue;
                };
                let Ok(position) = position.parse::<u64>() else {
                    continue;
                };
                if projection == MESSAGES_PROJECTION {
                    recorded.observations.push(Observation {
                        position,
                        observed_at,
                    });
                    latest_sender.send_if_modified(|latest| raise(latest, position));
                }
            }
        });
        Ok(ProjectionWatch {
            sampling: LagSampling::Notifications,
            latest,
            stop,
            task,
        })
    }

    /// Starts polling `GET /ready` on the server at `base_url`.
    pub fn poll_ready(base_url: &str) -> anyhow::Result<ProjectionWatch> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .timeout(Duration::from_secs(5))
            .build()?;
        let ready_url = format!("{base_url}/ready");
        let (latest_sender, latest) = watch::channel(0);
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut recorded = Observations {
                observations: Vec::with_capacity(1 << 14),
                failures: 0,
            };
            let mut ticks = tokio::time::interval(READY_POLL_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => return Ok(recorded),
                    _ = ticks.tick() => {}
                }
                let Some(position) = read_messages_position(&client, &ready_url).await else {
                    recorded.failures += 1;
                    continue;
                };
                let observed_at = Instant::now();
                if latest_sender.send_if_modified(|latest| raise(latest, position)) {
                    recorded.observations.push(Observation {
                        position,
                        observed_at,
                    });
                }
            }
        });
        Ok(ProjectionWatch {
            sampling: LagSampling::ReadyPolling,
            latest,
            stop,
            task,
        })
    }

    /// Waits until the projection has reached `position`; returns false after `timeout`.
    pub async fn wait_for(&mut self, position: u64, timeout: Duration) -> bool {
        let reached = self.latest.wait_for(|latest| *latest >= position);
        matches!(tokio::time::timeout(timeout, reached).await, Ok(Ok(_)))
    }

    /// Stops the watcher and matches each send with the moment its position was reached.
    pub async fn finish(self, sends: &[Acknowledged]) -> anyhow::Result<ProjectionLag> {
        // The task may have ended on its own after an error; a failed send is then harmless.
        let _ = self.stop.send(());
        let recorded = self
            .task
            .await
            .context("the projection-lag watcher panicked")??;
        Ok(ProjectionLag::compute(
            self.sampling,
            &recorded.observations,
            sends,
            recorded.failures,
        ))
    }
}

fn raise(latest: &mut u64, position: u64) -> bool {
    if position > *latest {
        *latest = position;
        true
    } else {
        false
    }
}

#[derive(Deserialize)]
struct ReadyReport {
    projections: Vec<ProjectionStatus>,
}

#[derive(Deserialize)]
struct ProjectionStatus {
    /// Named `name` by servers that return the full projection status.
    #[serde(alias = "name")]
    projection: String,
    position: u64,
}

/// Reads the `messages` projection's position from `/ready`. The body is read whatever the
/// status, because the server returns 503 while a projection lags, which is exactly when
/// the position matters.
async fn read_messages_position(client: &reqwest::Client, ready_url: &str) -> Option<u64> {
    let response = client.get(ready_url).send().await.ok()?;
    let report: ReadyReport = response.json().await.ok()?;
    report
        .projections
        .into_iter()
        .find(|status| status.projection == MESSAGES_PROJECTION)
        .map(|status| status.position)
}

/// The lag of each measured send, in microseconds.
pub struct ProjectionLag {
    pub sampling: LagSampling,
    pub histogram: Histogram<u64>,
    /// Sends whose position the projection had not reached when the watcher stopped.
    pub never_projected: u64,
    /// Sends already projected when their response arrived; each counts as a lag of 0.
    pub projected_before_response: u64,
    /// LISTEN reconnects or `/ready` polls without a `messages` position.
    pub watch_failures: u64,
}

impl ProjectionLag {
    fn compute(
        sampling: LagSampling,
        observations: &[Observation],
        sends: &[Acknowledged],
        watch_failures: u64,
    ) -> ProjectionLag {
        // Keep only observations that move the position forward, so the list is sorted by
        // position and by time, and a binary search finds the first one at or past a send.
        let mut timeline: Vec<Observation> = Vec::with_capacity(observations.len());
        for observation in observations {
            if timeline
                .last()
                .is_none_or(|last| observation.position > last.position)
            {
                timeline.push(*observation);
            }
        }
        let mut lag = ProjectionLag {
            sampling,
            histogram: new_latency_histogram(),
            never_projected: 0,
            projected_before_response: 0,
            watch_failures,
        };
        for send in sends {
            let index =
                timeline.partition_point(|observation| observation.position < send.position);
            let Some(reached) = timeline.get(index) else {
                lag.never_projected += 1;
                continue;
            };
            if reached.observed_at <= send.received_at {
                lag.projected_before_response += 1;
            }
            let micros = reached
                .observed_at
                .saturating_duration_since(send.received_at)
                .as_micros();
            lag.histogram
                .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
        }
        lag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn lag_uses_first_observation_at_or_past_position() {
        let start = Instant::now();
        let observations = [
            Observation {
                position: 10,
                observed_at: at(start, 5),
            },
            Observation {
                position: 20,
                observed_at: at(start, 30),
            },
        ];
        let sends = [Acknowledged {
            position: 15,
            received_at: at(start, 10),
        }];
        let lag = ProjectionLag::compute(LagSampling::Notifications, &observations, &sends, 0);
        assert_eq!(lag.histogram.len(), 1);
        assert_eq!(
            lag.histogram.max(),
            lag.histogram.highest_equivalent(20_000)
        );
        assert_eq!(lag.never_projected, 0);
        assert_eq!(lag.projected_before_response, 0);
    }

    #[test]
    fn lag_counts_early_and_missing_projections() {
        let start = Instant::now();
        let observations = [Observation {
            position: 10,
            observed_at: at(start, 5),
        }];
        let sends = [
            Acknowledged {
                position: 10,
                received_at: at(start, 8),
            },
            Acknowledged {
                position: 11,
                received_at: at(start, 9),
            },
        ];
        let lag = ProjectionLag::compute(LagSampling::Notifications, &observations, &sends, 0);
        assert_eq!(lag.projected_before_response, 1);
        assert_eq!(lag.never_projected, 1);
        assert_eq!(lag.histogram.len(), 1);
        assert_eq!(lag.histogram.max(), 0);
    }

    #[test]
    fn lag_ignores_observations_that_move_back() {
        let start = Instant::now();
        // A reconnected listener may deliver an older position after a newer one.
        let observations = [
            Observation {
                position: 20,
                observed_at: at(start, 5),
            },
            Observation {
                position: 12,
                observed_at: at(start, 50),
            },
        ];
        let sends = [Acknowledged {
            position: 12,
            received_at: at(start, 1),
        }];
        let lag = ProjectionLag::compute(LagSampling::Notifications, &observations, &sends, 0);
        assert_eq!(lag.histogram.max(), lag.histogram.highest_equivalent(4_000));
    }

    #[test]
    fn ready_report_accepts_both_field_names() {
        let old: ReadyReport =
            serde_json::from_str(r#"{"projections":[{"projection":"messages","position":7}]}"#)
                .unwrap();
        let new: ReadyReport =
            serde_json::from_str(r#"{"projections":[{"name":"messages","position":8}]}"#).unwrap();
        assert_eq!(old.projections[0].position, 7);
        assert_eq!(new.projections[0].projection, "messages");
    }
}
