//! Cluster-link emulator (**test support only**, never in the relay's run path): an emulation of
//! Confluent Cluster Linking's semantics between two mock clusters. It copies every record of the
//! linked topics from the source cluster to `<mirror_prefix><topic>` on the target with the same
//! partition, offset, key, value, headers and timestamp, and every `sync_interval` copies the
//! committed offsets of the linked consumer groups (clamped to what is already mirrored), as
//! cluster links do with consumer-offset sync. It can be paused, slowed and resumed, so tests can
//! build up link lag on purpose.
//!
//! `LinkOptions::skip_first` instead emulates a replication that does not preserve offsets
//! (MirrorMaker 2 started late), for the failover's timestamp start source.
//!
//! Identical offsets hold because the mirror topics are written only by the link, in order, with
//! an idempotent producer, and the source topics have no gaps (no compaction, no transactions).
//! It must not be used by `relay::start`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cluster link: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cluster link thread: {0}")]
    Thread(String),
}

#[derive(Debug, Clone, Default)]
pub struct LinkOptions {
    /// Source topics and their partition counts (the mirror topics must exist with as many).
    pub topics: Vec<(String, i32)>,
    /// Mirror topic name = prefix + source name.
    pub mirror_prefix: String,
    /// Consumer groups whose committed offsets are synced.
    pub groups: Vec<String>,
    pub sync_interval: Duration,
    /// Emulates a replication that does **not** preserve offsets (MirrorMaker 2 started after
    /// the topics had data): copying starts at source offset `skip_first` of every partition,
    /// so mirror offset = source offset − `skip_first`, and synced group offsets are translated
    /// the same way. Zero (the default) is Cluster Linking: identical offsets.
    pub skip_first: i64,
}

#[derive(Debug, Default)]
struct Control {
    paused: AtomicBool,
    /// Set by the worker once it saw `paused` and flushed what it had copied: from then on
    /// nothing reaches the target until `resume`.
    pause_seen: AtomicBool,
    /// Extra delay per copied record, in microseconds (a slow link).
    delay_us: AtomicU64,
    stop: AtomicBool,
    copied: AtomicU64,
    synced: AtomicU64,
}

/// A running link. Dropping it stops the link.
pub struct ClusterLink {
    ctl: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl ClusterLink {
    pub fn start(source: &str, target: &str, opts: LinkOptions) -> Result<ClusterLink, LinkError> {
        let ctl = Arc::new(Control::default());
        let mut worker = Worker::new(source, target, opts, Arc::clone(&ctl))?;
        let thread = std::thread::Builder::new()
            .name("cluster-link".into())
            .spawn(move || worker.run())
            .map_err(|e| LinkError::Thread(e.to_string()))?;
        Ok(ClusterLink {
            ctl,
            thread: Some(thread),
        })
    }

    /// Stops copying and syncing (records pile up on the source: link lag). Returns once the
    /// link has stopped: every record it copied is on the target, and a record produced to the
    /// source after this returns stays there until `resume` (at most 10 s of waiting, for a
    /// worker stuck flushing to a dead target).
    pub fn pause(&self) {
        self.ctl.pause_seen.store(false, Ordering::Release);
        self.ctl.paused.store(true, Ordering::Release);
        let until = Instant::now() + Duration::from_secs(10);
        while !self.ctl.pause_seen.load(Ordering::Acquire)
            && Instant::now() < until
            && self.thread.as_ref().is_some_and(|t| !t.is_finished())
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn resume(&self) {
        self.ctl.paused.store(false, Ordering::Release);
    }

    /// Adds `per_record` of delay to every copied record (zero: full speed).
    pub fn slow(&self, per_record: Duration) {
        self.ctl.delay_us.store(
            u64::try_from(per_record.as_micros()).unwrap_or(u64::MAX),
            Ordering::Release,
        );
    }

    pub fn is_paused(&self) -> bool {
        self.ctl.paused.load(Ordering::Acquire)
    }

    /// The delay added per copied record.
    pub fn delay(&self) -> Duration {
        Duration::from_micros(self.ctl.delay_us.load(Ordering::Acquire))
    }

    /// Records copied so far.
    pub fn copied(&self) -> u64 {
        self.ctl.copied.load(Ordering::Acquire)
    }

    /// Offset syncs performed so far (one per group per interval that had offsets to copy).
    pub fn synced(&self) -> u64 {
        self.ctl.synced.load(Ordering::Acquire)
    }
}

impl Drop for ClusterLink {
    fn drop(&mut self) {
        self.ctl.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    source: String,
    target: String,
    opts: LinkOptions,
    ctl: Arc<Control>,
    consumer: BaseConsumer,
    producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
}

impl Worker {
    fn new(
        source: &str,
        target: &str,
        opts: LinkOptions,
        ctl: Arc<Control>,
    ) -> Result<Worker, LinkError> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", source)
            .set("group.id", "cluster-link-emulator")
            .set("enable.auto.commit", "false")
            .set("log_level", "0")
            .create()?;
        let producer = ClientConfig::new()
            .set("bootstrap.servers", target)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("log_level", "0")
            .create()?;
        Ok(Worker {
            source: source.to_string(),
            target: target.to_string(),
            opts,
            ctl,
            consumer,
            producer,
        })
    }

    fn mirror(&self, topic: &str) -> String {
        format!("{}{topic}", self.opts.mirror_prefix)
    }

    /// Starts reading every source partition where its mirror ends.
    fn assign(&self) -> bool {
        let mut tpl = TopicPartitionList::new();
        for (t, n) in &self.opts.topics {
            for p in 0..*n {
                let start = match self.producer.client().fetch_watermarks(
                    &self.mirror(t),
                    p,
                    Duration::from_secs(5),
                ) {
                    Ok((_, hw)) => hw + self.opts.skip_first,
                    Err(_) => return false,
                };
                if tpl
                    .add_partition_offset(t, p, Offset::Offset(start))
                    .is_err()
                {
                    return false;
                }
            }
        }
        self.consumer.assign(&tpl).is_ok()
    }

    fn run(&mut self) {
        while !self.assign() {
            if self.ctl.stop.load(Ordering::Acquire) {
                return;
            }
            if self.ctl.paused.load(Ordering::Acquire) {
                self.ctl.pause_seen.store(true, Ordering::Release);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut last_sync = Instant::now();
        while !self.ctl.stop.load(Ordering::Acquire) {
            if self.ctl.paused.load(Ordering::Acquire) {
                if !self.ctl.pause_seen.load(Ordering::Acquire) {
                    let _ = self.producer.flush(Duration::from_secs(5));
                    self.ctl.pause_seen.store(true, Ordering::Release);
                }
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(50)) {
                self.copy(&m);
            }
            if last_sync.elapsed() >= self.opts.sync_interval {
                let _ = self.producer.flush(Duration::from_secs(5));
                self.sync_offsets();
                last_sync = Instant::now();
            }
        }
        let _ = self.producer.flush(Duration::from_secs(5));
    }

    fn copy(&self, m: &rdkafka::message::BorrowedMessage<'_>) {
        let delay = self.ctl.delay_us.load(Ordering::Acquire);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        let topic = self.mirror(m.topic());
        let mut headers = OwnedHeaders::new();
        if let Some(hs) = m.headers() {
            for h in hs.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topic)
            .partition(m.partition())
            .headers(headers);
        if let Some(k) = m.key() {
            rec = rec.key(k);
        }
        if let Some(v) = m.payload() {
            rec = rec.payload(v);
        }
        if let Some(ts) = m.timestamp().to_millis() {
            rec = rec.timestamp(ts);
        }
        // A full local queue: wait for deliveries and try again; never skip a record.
        let mut rec = rec;
        loop {
            match self.producer.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    self.producer.poll(Duration::from_millis(50));
                }
            }
        }
        self.ctl.copied.fetch_add(1, Ordering::AcqRel);
    }

    /// Copies each group's committed offsets to the target, clamped to the mirrored end.
    fn sync_offsets(&self) {
        for g in &self.opts.groups {
            let Ok(src) = ClientConfig::new()
                .set("bootstrap.servers", &self.source)
                .set("group.id", g)
                .set("log_level", "0")
                .create::<BaseConsumer>()
            else {
                continue;
            };
            let mut tpl = TopicPartitionList::new();
            for (t, n) in &self.opts.topics {
                for p in 0..*n {
                    tpl.add_partition(t, p);
                }
            }
            let Ok(committed) = src.committed_offsets(tpl, Duration::from_secs(2)) else {
                continue;
            };
            let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
            for e in committed.elements() {
                if let Offset::Offset(o) = e.offset() {
                    let mirror = self.mirror(e.topic());
                    let hw = self
                        .producer
                        .client()
                        .fetch_watermarks(&mirror, e.partition(), Duration::from_secs(2))
                        .map(|(_, hw)| hw)
                        .unwrap_or(0);
                    let translated = (o - self.opts.skip_first).max(0);
                    offsets.insert((mirror, e.partition()), translated.min(hw));
                }
            }
            if offsets.is_empty() {
                continue;
            }
            let Ok(dst) = ClientConfig::new()
                .set("bootstrap.servers", &self.target)
                .set("group.id", g)
                .set("enable.auto.commit", "false")
                .set("log_level", "0")
                .create::<BaseConsumer>()
            else {
                continue;
            };
            let mut out = TopicPartitionList::new();
            for ((t, p), o) in &offsets {
                let _ = out.add_partition_offset(t, *p, Offset::Offset(*o));
            }
            match dst.commit(&out, CommitMode::Sync) {
                Ok(()) => {
                    self.ctl.synced.fetch_add(1, Ordering::AcqRel);
                }
                Err(e) => {
                    tracing::debug!(group = %g, error = %e, "cluster link: offset sync failed")
                }
            }
        }
    }
}
