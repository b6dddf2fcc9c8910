//! The S3 backend, over the AWS SDK: its standard credential, region and endpoint chain, and
//! its retry policy (exponential backoff with jitter on throttling, 5xx, timeouts and broken
//! connections) for every request.
//!
//! Uploads: the stream is cut into parts by [`PartPlan`]; parts upload concurrently while the
//! next is read, and the memory they hold is bounded by a semaphore counted in MiB. Every part
//! carries its CRC64-NVME, and the completed object declares the whole stream's CRC64-NVME
//! (a full-object checksum, combined from the parts), so the service verifies both. A failure,
//! SIGINT or SIGTERM aborts the multipart upload: an object only ever appears complete.
//!
//! Downloads: ranged GETs in parallel, written in order, each range resumed at the byte it
//! stopped at, every range pinned to the object's ETag (a concurrent overwrite is an error, not
//! a spliced stream); the total length is checked, and the full-object checksum when the service
//! keeps one.

use super::parts::{MAX_PARTS, MIB, PartPlan, parts_in_flight};
use super::{ObjectInfo, PutOptions, S3Settings, Transfer};
use crate::plumbing::{ExitCode, Progress, coded, signals};
use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
    ObjectIdentifier, ServerSideEncryption, StorageClass,
};
use bytes::Bytes;
use crc_fast::CrcAlgorithm::Crc64Nvme;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Ranged GETs fetch this much each.
const GET_CHUNK: u64 = 4 * MIB;
/// A body that delivers nothing for this long is treated as a dropped connection and resumed.
const STALL: Duration = Duration::from_secs(60);

/// Recycled part and range buffers. Reuse is what keeps peak memory at the budget: after the
/// first multi-MiB buffer is freed, glibc raises its mmap threshold, and fresh buffers then come
/// from per-thread arenas that fragment and are not given back (measured: a 48 MiB budget
/// peaked at 95 MiB RSS without reuse).
#[derive(Clone, Default)]
struct Pool(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl Pool {
    /// An empty buffer with room for `size` bytes.
    fn take(&self, size: usize) -> Vec<u8> {
        let mut free = self.0.lock().unwrap();
        while let Some(mut v) = free.pop() {
            if v.capacity() >= size {
                v.clear();
                return v;
            }
        }
        Vec::with_capacity(size)
    }

    fn give(&self, v: Vec<u8>) {
        self.0.lock().unwrap().push(v);
    }

    /// Takes back a buffer lent out as `Bytes`, if nobody else still holds it.
    fn give_bytes(&self, b: Bytes) {
        if let Ok(m) = b.try_into_mut() {
            self.give(m.into());
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Builds a client from the SDK's standard chain, with our overrides. A custom endpoint gets
/// path-style addressing (what MinIO, Ceph and most S3-compatible services expect) and a
/// default region, since such services rarely care but SigV4 needs one.
pub async fn client(s: &S3Settings) -> Result<Client> {
    client_with(s, Connections::Kept).await
}

/// Whether a client keeps its connections open between requests.
#[derive(PartialEq, Clone, Copy)]
enum Connections {
    Kept,
    /// A new connection for every request, to a plain-HTTP endpoint: on a kept connection a
    /// server that writes a response's head and body separately without TCP_NODELAY (s3s-fs
    /// does) holds the body until our delayed acknowledgement of the head, 40 ms (strace,
    /// 2026-12-05: a 1-byte object took 50 ms to fetch after its HEAD, 10 ms this way). A
    /// plain connection costs one round trip; over TLS a handshake costs more, so those stay.
    FreshForReads,
}

/// A client for ranged and parallel reads (weir-get, a delta restore's `--from`, a
/// repository's objects).
async fn reading_client(s: &S3Settings) -> Result<Client> {
    client_with(s, Connections::FreshForReads).await
}

async fn client_with(s: &S3Settings, fresh: Connections) -> Result<Client> {
    VERBOSE.store(s.verbose, std::sync::atomic::Ordering::Relaxed);
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(s.attempts.max(1))
                .with_initial_backoff(Duration::from_millis(250))
                .with_max_backoff(Duration::from_secs(20)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(STALL)
                .build(),
        );
    if let Some(p) = &s.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &s.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    if let Some(e) = &s.endpoint {
        loader = loader.endpoint_url(e);
    }
    let conf = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&conf);
    if conf.region().is_none() {
        b = b.region(aws_config::Region::from_static("us-east-1"));
    }
    if conf.endpoint_url().is_some() && !s.virtual_hosted {
        b = b.force_path_style(true);
    }
    let plain_http = conf
        .endpoint_url()
        .is_some_and(|e| e.starts_with("http://"));
    if fresh == Connections::FreshForReads && plain_http {
        use aws_smithy_http_client::{Builder, tls};
        // An idle timeout of zero: every request gets a connection of its own.
        let tls = tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc);
        b = b.http_client(
            Builder::new()
                .pool_idle_timeout(Duration::ZERO)
                .tls_provider(tls)
                .build_https(),
        );
    }
    Ok(Client::from_conf(b.build()))
}

/// Turns an SDK error into one line that names the object and the problem, with the exit
/// code a script can act on.
pub fn fail<E>(
    what: &str,
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().unwrap_or("").to_string();
    let message = err.message().unwrap_or("").to_string();
    let detail = match (code.is_empty(), message.is_empty()) {
        (true, _) => format!("HTTP {}", status.unwrap_or(0)),
        (false, true) => code.clone(),
        (false, false) => format!("{code}: {message}"),
    };
    match (code.as_str(), status) {
        ("NoSuchBucket", _) => anyhow!("{what}: the bucket does not exist"),
        ("NoSuchKey" | "NotFound", _) | (_, Some(404)) => {
            coded(ExitCode::NotFound, format!("{what}: no such object"))
        }
        ("PreconditionFailed", _) | (_, Some(412)) => coded(
            ExitCode::Exists,
            format!("{what}: already exists (--if-none-match)"),
        ),
        ("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch", _) | (_, Some(403)) => {
            anyhow!("{what}: access denied ({detail}); check the credentials")
        }
        _ => {
            let causes = causes(&err);
            match &err {
                _ if is_credentials_error(&err) => {
                    let detail = if VERBOSE.load(std::sync::atomic::Ordering::Relaxed) {
                        format!(" (the SDK said: {causes})")
                    } else {
                        " (-v shows the SDK's detail)".into()
                    };
                    anyhow!(
                        "{what}: no usable AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance or web-identity role{detail}"
                    )
                }
                SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                    anyhow!("{what}: cannot reach the storage service: {causes}")
                }
                _ if !code.is_empty() => anyhow!("{what}: {detail}"),
                _ => anyhow!("{what}: {causes}"),
            }
        }
    }
}

/// Whether the request failed before it was sent because no provider in the SDK's chain
/// (environment, profile, SSO, web identity, ECS, IMDS) produced credentials. The SDK reports
/// that as a dispatch failure whose text is the last provider's complaint ("failed to load
/// IMDS session token"), which tells a user nothing about what to set.
fn is_credentials_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<aws_credential_types::provider::error::CredentialsError>()
            .is_some()
            || e.to_string()
                .contains("no providers in chain provided credentials")
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// `-v`: errors carry the SDK's own detail. Set once from the settings, when a client is made.
static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The error's chain of causes as one line, each message once (the SDK's errors repeat their
/// sources in their own messages, and its `Debug` output is not for users).
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let m = e.to_string();
        if !m.is_empty() && !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = e.source();
    }
    parts.join(": ")
}

fn b64(crc: u64) -> String {
    aws_smithy_types::base64::encode(crc.to_be_bytes())
}

fn unb64(s: &str) -> Option<u64> {
    let v = aws_smithy_types::base64::decode(s).ok()?;
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

// ---------------------------------------------------------------------------------------------
// weir-put

pub fn put(
    s: &S3Settings,
    bucket: &str,
    key: &str,
    t: &Transfer,
    o: &PutOptions,
    input: Box<dyn Read + Send>,
) -> Result<u64> {
    runtime()?.block_on(put_async(s, bucket, key, t, o, input))
}

/// One part read from the input: its bytes, CRC64-NVME, and the memory it holds.
struct Part {
    data: Vec<u8>,
    crc: u64,
    /// Shorter than asked for: the input ended.
    last: bool,
    _memory: OwnedSemaphorePermit,
}

struct Reader {
    input: Option<Box<dyn Read + Send>>,
    memory: Arc<Semaphore>,
    budget_mib: u32,
    pool: Pool,
}

impl Reader {
    /// Reads the next part of `size` bytes on a blocking thread, once its memory is granted.
    /// A part asks for at most half the budget, so one part can always upload while the next
    /// is read, whatever the budget.
    async fn next(&mut self, size: u64) -> Result<Part> {
        let mib = ((size / MIB) as u32).min(self.budget_mib / 2).max(1);
        let permit = self.memory.clone().acquire_many_owned(mib).await?;
        let mut input = self.input.take().expect("reader in use");
        let mut data = self.pool.take(size as usize);
        let (input, data) = tokio::task::spawn_blocking(move || {
            let r = (&mut input).take(size).read_to_end(&mut data);
            (input, r.map(|_| data))
        })
        .await?;
        self.input = Some(input);
        let data = data.context("reading standard input")?;
        Ok(Part {
            crc: crc_fast::checksum(Crc64Nvme, &data),
            last: (data.len() as u64) < size,
            data,
            _memory: permit,
        })
    }
}

async fn put_async(
    s: &S3Settings,
    bucket: &str,
    key: &str,
    t: &Transfer,
    o: &PutOptions,
    input: Box<dyn Read + Send>,
) -> Result<u64> {
    let url = format!("s3://{bucket}/{key}");
    let client = client(s).await?;
    if o.if_none_match {
        refuse_existing(&client, bucket, key, &url).await?;
    }
    let plan = PartPlan::new(o.expected_size);
    let budget_mib = ((t.buffers() / MIB) as u32).max(2);
    let mut reader = Reader {
        input: Some(input),
        memory: Arc::new(Semaphore::new(budget_mib as usize)),
        budget_mib,
        pool: Pool::default(),
    };
    let mut progress = Progress::new(o.expected_size, t.progress, t.quiet).bytes_only();

    // A stream that fits in one part is one PUT; so is one that ends exactly at the first part
    // boundary, which is only known once the next read returns nothing.
    let first = reader.next(plan.size(1)).await?;
    let second = if first.last {
        None
    } else {
        Some(reader.next(plan.size(2)).await?)
    };
    let second = second.filter(|p| !p.data.is_empty());
    let Some(second) = second else {
        let n = first.data.len() as u64;
        single_put(&client, bucket, key, o, first)
            .await
            .map_err(|e| fail(&url, e))?;
        progress.update(n, 0);
        return Ok(n);
    };

    let upload_id = create_upload(&client, bucket, key, o, &url).await?;
    let guard = abort_on_signal(&client, bucket, key, &upload_id);
    let uploaded = upload_parts(
        &client,
        bucket,
        key,
        &upload_id,
        &url,
        &plan,
        &mut reader,
        first,
        second,
        t,
        &mut progress,
    )
    .await;
    let result = match uploaded {
        Ok((parts, total, crc)) => {
            let done = complete_upload(&client, bucket, key, &upload_id, parts, crc, o).await;
            done.map(|_| total).map_err(|e| fail(&url, e))
        }
        Err(e) => Err(e),
    };
    if result.is_err() {
        abort(&client, bucket, key, &upload_id).await;
    }
    signals::forget(guard);
    result
}

/// `--if-none-match`: fail before uploading anything. The conditional write at the end is what
/// makes it atomic against a concurrent writer.
async fn refuse_existing(client: &Client, bucket: &str, key: &str, url: &str) -> Result<()> {
    match client.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => Err(coded(
            ExitCode::Exists,
            format!("{url}: already exists (--if-none-match)"),
        )),
        Err(e) => {
            let e = fail(url, e);
            if crate::plumbing::exit_code_of(&e) != ExitCode::NotFound {
                return Err(e);
            }
            Ok(())
        }
    }
}

/// Starts a multipart upload whose completion declares a full-object CRC64-NVME, with the
/// object's metadata and encryption settings; returns its id.
async fn create_upload(
    client: &Client,
    bucket: &str,
    key: &str,
    o: &PutOptions,
    url: &str,
) -> Result<String> {
    let mut create = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
        .checksum_type(ChecksumType::FullObject);
    if !o.metadata.is_empty() {
        create = create.set_metadata(Some(o.metadata.iter().cloned().collect()));
    }
    create = create
        .set_content_type(o.content_type.clone())
        .set_storage_class(o.storage_class.as_deref().map(StorageClass::from))
        .set_server_side_encryption(o.sse.as_deref().map(ServerSideEncryption::from))
        .set_ssekms_key_id(o.sse_kms_key_id.clone());
    let created = create.send().await.map_err(|e| fail(url, e))?;
    Ok(created
        .upload_id()
        .context("the service returned no upload id")?
        .to_string())
}

/// On SIGINT/SIGTERM the signal thread aborts the upload before the process ends; returns
/// the cleanup's handle, to forget once the upload completed or was aborted.
fn abort_on_signal(client: &Client, bucket: &str, key: &str, upload_id: &str) -> u64 {
    let (client, bucket, key, id) = (
        client.clone(),
        bucket.to_string(),
        key.to_string(),
        upload_id.to_string(),
    );
    signals::on_cleanup(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let abort = abort(&client, &bucket, &key, &id);
            let _ = tokio::time::timeout(Duration::from_secs(15), abort).await;
        });
    })
}

/// Completes the upload with its parts and the whole stream's CRC, create-only with
/// `--if-none-match`.
async fn complete_upload(
    client: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    parts: Vec<aws_sdk_s3::types::CompletedPart>,
    crc: u64,
    o: &PutOptions,
) -> Result<
    aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput,
    SdkError<
        aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadError,
        aws_sdk_s3::config::http::HttpResponse,
    >,
> {
    let mut complete = client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .checksum_crc64_nvme(b64(crc))
        .checksum_type(ChecksumType::FullObject);
    if o.if_none_match {
        complete = complete.if_none_match("*");
    }
    complete.send().await
}

async fn abort(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    let _ = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await;
}

async fn single_put(
    client: &Client,
    bucket: &str,
    key: &str,
    o: &PutOptions,
    part: Part,
) -> Result<
    aws_sdk_s3::operation::put_object::PutObjectOutput,
    SdkError<
        aws_sdk_s3::operation::put_object::PutObjectError,
        aws_sdk_s3::config::http::HttpResponse,
    >,
> {
    let mut put = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_length(part.data.len() as i64)
        .checksum_crc64_nvme(b64(part.crc))
        .body(ByteStream::from(Bytes::from(part.data)));
    if !o.metadata.is_empty() {
        put = put.set_metadata(Some(o.metadata.iter().cloned().collect()));
    }
    if o.if_none_match {
        put = put.if_none_match("*");
    }
    put.set_content_type(o.content_type.clone())
        .set_storage_class(o.storage_class.as_deref().map(StorageClass::from))
        .set_server_side_encryption(o.sse.as_deref().map(ServerSideEncryption::from))
        .set_ssekms_key_id(o.sse_kms_key_id.clone())
        .customize()
        // The CRC64-NVME above already protects the body end to end; signing it as well
        // would hash every byte a second time for no added integrity.
        .disable_payload_signing()
        .send()
        .await
}

/// One part's request.
struct UploadPart {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    /// The part, for messages.
    what: String,
    number: u32,
    crc: u64,
}

impl UploadPart {
    /// Sends the part unsigned, with its CRC64-NVME (which the service checks), and returns
    /// its completion record. The buffer goes back to the pool for the reader to reuse.
    async fn send(self, data: Vec<u8>, pool: &Pool) -> Result<CompletedPart> {
        let crc = b64(self.crc);
        let data = Bytes::from(data);
        let out = self
            .client
            .upload_part()
            .bucket(self.bucket)
            .key(self.key)
            .upload_id(self.upload_id)
            .part_number(self.number as i32)
            .content_length(data.len() as i64)
            .checksum_crc64_nvme(&crc)
            .body(ByteStream::from(data.clone()))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| fail(&self.what, e))?;
        pool.give_bytes(data);
        Ok(CompletedPart::builder()
            .part_number(self.number as i32)
            .set_e_tag(out.e_tag().map(str::to_string))
            .checksum_crc64_nvme(crc)
            .build())
    }
}

/// Uploads `first`, `second` and the rest of the input as parts; returns the completed parts,
/// the byte count and the whole stream's CRC64-NVME.
#[allow(clippy::too_many_arguments)]
async fn upload_parts(
    client: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    url: &str,
    plan: &PartPlan,
    reader: &mut Reader,
    first: Part,
    second: Part,
    t: &Transfer,
    progress: &mut Progress,
) -> Result<(Vec<CompletedPart>, u64, u64)> {
    let jobs = Arc::new(Semaphore::new(
        parts_in_flight(t.buffers(), plan.size(1), t.jobs) as usize,
    ));
    let mut tasks = tokio::task::JoinSet::new();
    let mut done: Vec<CompletedPart> = Vec::new();
    let (mut total, mut crc) = (0u64, 0u64);
    let mut next = Some(second);
    let mut part = first;
    let mut n: u32 = 1;
    loop {
        // The permit travels with the bytes into the task, so the memory counts as in use
        // until the part is uploaded.
        let Part {
            data,
            crc: part_crc,
            last,
            _memory: permit,
        } = part;
        let len = data.len() as u64;
        crc = if n == 1 {
            part_crc
        } else {
            crc_fast::checksum_combine(Crc64Nvme, crc, part_crc, len)
        };
        total += len;
        let upload = UploadPart {
            client: client.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            what: format!("{url} (part {n})"),
            number: n,
            crc: part_crc,
        };
        let (jobs, pool) = (jobs.clone(), reader.pool.clone());
        tasks.spawn(async move {
            let _slot = jobs.acquire_owned().await?;
            let done = upload.send(data, &pool).await;
            drop(permit);
            done
        });
        // Fail fast: an error in any finished part stops the reading.
        while let Some(r) = tasks.try_join_next() {
            done.push(r??);
        }
        progress.update(total, 0);
        if last || signals::interrupted() {
            break;
        }
        n += 1;
        if n > MAX_PARTS {
            bail!(
                "{url}: the stream is longer than {} bytes, the most 10,000 parts can hold; pass a larger --expected-size",
                plan.capacity()
            );
        }
        part = match next.take() {
            Some(p) => p,
            None => reader.next(plan.size(n)).await?,
        };
        if part.data.is_empty() {
            break;
        }
    }
    while let Some(r) = tasks.join_next().await {
        done.push(r??);
    }
    done.sort_by_key(|p| p.part_number());
    Ok((done, total, crc))
}

// ---------------------------------------------------------------------------------------------
// weir-get

/// The object's bytes to `out`, in ranged GETs in parallel, written in order.
pub fn get(
    s: &S3Settings,
    bucket: &str,
    key: &str,
    t: &Transfer,
    out: &mut (dyn std::io::Write + Send),
) -> Result<u64> {
    runtime()?.block_on(get_async(s, bucket, key, t, out))
}

async fn get_async(
    s: &S3Settings,
    bucket: &str,
    key: &str,
    t: &Transfer,
    out: &mut (dyn std::io::Write + Send),
) -> Result<u64> {
    let url = format!("s3://{bucket}/{key}");
    let client = reading_client(s).await?;
    let head = head(&client, bucket, key, &url).await?;
    let size = head.content_length().unwrap_or(0).max(0) as u64;
    let etag = head.e_tag().map(str::to_string);
    // A composite checksum is a checksum of part checksums, not of the bytes; only a
    // full-object one can be compared with what we receive.
    let expect = match head.checksum_type() {
        Some(ChecksumType::Composite) => None,
        _ => head.checksum_crc64_nvme().and_then(unb64),
    };

    let mut progress = Progress::new(Some(size), t.progress, t.quiet).bytes_only();
    let in_flight = parts_in_flight(t.buffers(), GET_CHUNK, t.jobs).max(1) as usize;
    // Ranges are queued beyond those running, as far as the buffers go, each starting as
    // soon as any running one ends: the next one to write may be the slowest, and refilling
    // only after it arrived left fewer GETs running meanwhile than --jobs.
    let queued = parts_in_flight(t.buffers(), GET_CHUNK, u32::MAX) as usize;
    let running = Arc::new(Semaphore::new(in_flight));
    let pool = Pool::default();
    let mut ranges = (0..size.div_ceil(GET_CHUNK)).map(|i| {
        let start = i * GET_CHUNK;
        (start, (start + GET_CHUNK).min(size))
    });
    // Each range is a task of its own, so the ranges keep arriving while the writer waits on
    // its output (a future polled only by the writer's loop stood still meanwhile, and the
    // server with it); they are taken in order, at most `in_flight` at once.
    let mut pending = Fetches(std::collections::VecDeque::new());
    // Only a declared full-object checksum is worth a pass over every byte.
    let mut digest = expect.map(|_| crc_fast::Digest::new(Crc64Nvme));
    let mut n = 0u64;
    loop {
        while pending.0.len() < queued {
            let Some((start, end)) = ranges.next() else {
                break;
            };
            let buf = pool.take((end - start) as usize);
            let (client, bucket, key, etag, running) = (
                client.clone(),
                bucket.to_string(),
                key.to_string(),
                etag.clone(),
                running.clone(),
            );
            let attempts = s.attempts;
            pending.0.push_back(tokio::spawn(async move {
                let _turn = running.acquire_owned().await?;
                let etag = etag.as_deref();
                fetch_range(&client, &bucket, &key, etag, start, end, attempts, buf).await
            }));
        }
        let Some(next) = pending.0.pop_front() else {
            break;
        };
        let chunk = next
            .await
            .context("a ranged GET stopped")?
            .map_err(|e| e.context(url.clone()))?;
        if let Some(d) = digest.as_mut() {
            d.update(&chunk);
        }
        n += chunk.len() as u64;
        tokio::task::block_in_place(|| out.write_all(&chunk)).context("writing the output")?;
        pool.give(chunk);
        progress.update(n, 0);
    }
    if n != size {
        return Err(coded(
            ExitCode::BadArchive,
            format!("{url}: received {n} bytes of {size}"),
        ));
    }
    if let (Some(want), Some(d)) = (expect, &digest) {
        let got = d.finalize();
        if got != want {
            return Err(coded(
                ExitCode::BadArchive,
                format!(
                    "{url}: checksum mismatch: CRC64-NVME of the bytes received is {}, the object's is {}",
                    b64(got),
                    b64(want)
                ),
            ));
        }
    }
    Ok(n)
}

/// The ranged GETs under way, in the order they are written; those left when the download
/// stops (an error, a signal) are cancelled.
struct Fetches(std::collections::VecDeque<tokio::task::JoinHandle<Result<Vec<u8>>>>);

impl Drop for Fetches {
    fn drop(&mut self) {
        self.0.iter().for_each(|h| h.abort());
    }
}

/// One object read by range (a delta restore's `--from`): one client, the length and ETag
/// from a HEAD, then a ranged GET per read, each pinned to that ETag so a replaced object is
/// an error rather than a mix of two.
pub struct RangedObject {
    rt: tokio::runtime::Runtime,
    client: Client,
    bucket: String,
    key: String,
    etag: Option<String>,
    len: u64,
    attempts: u32,
}

impl RangedObject {
    pub fn open(s: &S3Settings, bucket: &str, key: &str) -> Result<RangedObject> {
        let rt = runtime()?;
        let url = format!("s3://{bucket}/{key}");
        let (client, h) = rt.block_on(async {
            let c = reading_client(s).await?;
            let h = head(&c, bucket, key, &url).await?;
            Ok::<_, anyhow::Error>((c, h))
        })?;
        Ok(RangedObject {
            len: h.content_length().unwrap_or(0).max(0) as u64,
            etag: h.e_tag().map(str::to_string),
            rt,
            client,
            bucket: bucket.into(),
            key: key.into(),
            attempts: s.attempts,
        })
    }
}

impl crate::stream::ranged::Ranged for RangedObject {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, at: u64, len: usize) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.rt.block_on(fetch_range(
            &self.client,
            &self.bucket,
            &self.key,
            self.etag.as_deref(),
            at,
            at + len as u64,
            self.attempts,
            Vec::with_capacity(len),
        ))
    }
}

/// The object's length, ETag and checksums; a missing object is exit 4, a missing bucket 1.
async fn head(
    client: &Client,
    bucket: &str,
    key: &str,
    url: &str,
) -> Result<aws_sdk_s3::operation::head_object::HeadObjectOutput> {
    let asked = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await;
    let e = match asked {
        Ok(h) => return Ok(h),
        Err(e) => fail(url, e),
    };
    // HEAD has no body, so a missing bucket looks like a missing key; a WAL restore_command
    // must not mistake one for the other.
    if crate::plumbing::exit_code_of(&e) == ExitCode::NotFound {
        if let Err(b) = client.head_bucket().bucket(bucket).send().await {
            if b.raw_response().map(|r| r.status().as_u16()) == Some(404) {
                bail!("{url}: the bucket does not exist");
            }
        }
    }
    Err(e)
}

/// Fetches bytes `start..end`, resuming after a dropped or stalled body at the first byte not
/// yet received. The SDK retries the requests themselves; this loop retries the bodies.
#[allow(clippy::too_many_arguments)]
async fn fetch_range(
    client: &Client,
    bucket: &str,
    key: &str,
    etag: Option<&str>,
    start: u64,
    end: u64,
    attempts: u32,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>> {
    let len = (end - start) as usize;
    let mut failures = 0u32;
    loop {
        let from = start + buf.len() as u64;
        let resp = client
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(format!("bytes={from}-{}", end - 1))
            .set_if_match(etag.map(str::to_string))
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(412) => {
                bail!("the object changed while it was being read (ETag no longer matches)")
            }
            Err(e) => return Err(fail(&format!("bytes {from}-{}", end - 1), e)),
        };
        let mut body = resp.body;
        let broken = loop {
            match tokio::time::timeout(STALL, body.next()).await {
                Ok(Some(Ok(bytes))) => {
                    if buf.len() + bytes.len() > len {
                        bail!("the service sent more bytes than the range asked for");
                    }
                    buf.extend_from_slice(&bytes);
                }
                Ok(None) => break None,
                Ok(Some(Err(e))) => break Some(e.to_string()),
                Err(_) => break Some(format!("no data for {} s", STALL.as_secs())),
            }
        };
        if buf.len() == len {
            return Ok(buf);
        }
        failures += 1;
        let why = broken.unwrap_or_else(|| "the body ended early".into());
        if failures >= attempts.max(1) {
            bail!(
                "bytes {start}-{}: giving up after {failures} attempts: {why}",
                end - 1
            );
        }
        // Exponential backoff with full jitter, as the SDK does for requests.
        let cap =
            Duration::from_millis(250 * (1u64 << failures.min(7))).min(Duration::from_secs(20));
        let jitter = cap.mul_f64(fastrand_unit());
        tokio::time::sleep(jitter).await;
    }
}

/// A number in [0, 1) for jitter; no cryptographic quality needed.
fn fastrand_unit() -> f64 {
    let mut b = [0u8; 8];
    crate::plumbing::random_bytes(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

// ---------------------------------------------------------------------------------------------
// weir-ls, weir-rm

pub fn list(s: &S3Settings, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>> {
    runtime()?.block_on(async {
        let client = client(s).await?;
        list_async(&client, bucket, prefix).await
    })
}

async fn list_async(client: &Client, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>> {
    let what = format!("s3://{bucket}/{prefix}");
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| fail(&what, e))?;
        for ob in page.contents() {
            let Some(key) = ob.key() else { continue };
            out.push(ObjectInfo {
                key: format!("s3://{bucket}/{key}"),
                size: ob.size().unwrap_or(0).max(0) as u64,
                modified: ob
                    .last_modified()
                    .and_then(|d| std::time::SystemTime::try_from(*d).ok())
                    .unwrap_or(std::time::UNIX_EPOCH),
            });
        }
    }
    Ok(out)
}

pub fn remove(s: &S3Settings, bucket: &str, key: &str, recursive: bool) -> Result<Vec<String>> {
    runtime()?.block_on(async {
        let client = client(s).await?;
        let url = format!("s3://{bucket}/{key}");
        if !recursive {
            // DELETE succeeds on a missing key; ask first so that rm can say "no such object".
            if let Err(e) = client.head_object().bucket(bucket).key(key).send().await {
                let e = fail(&url, e);
                if crate::plumbing::exit_code_of(&e) == ExitCode::NotFound {
                    return Ok(vec![]);
                }
                return Err(e);
            }
            client
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| fail(&url, e))?;
            return Ok(vec![url]);
        }
        let objects = list_async(&client, bucket, key).await?;
        let prefix = format!("s3://{bucket}/");
        let keys: Vec<String> = objects
            .into_iter()
            .map(|o| o.key[prefix.len()..].to_string())
            .collect();
        delete_keys(&client, bucket, &keys).await
    })
}

/// Deletes the given keys of one bucket, up to 1,000 per request; returns their addresses.
pub fn remove_keys(s: &S3Settings, bucket: &str, keys: &[String]) -> Result<Vec<String>> {
    runtime()?.block_on(async {
        let client = client(s).await?;
        delete_keys(&client, bucket, keys).await
    })
}

pub(crate) async fn delete_keys(
    client: &Client,
    bucket: &str,
    keys: &[String],
) -> Result<Vec<String>> {
    let prefix = format!("s3://{bucket}/");
    let mut removed = Vec::new();
    for batch in keys.chunks(1000) {
        let ids = batch
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()?;
        let out = client
            .delete_objects()
            .bucket(bucket)
            .delete(
                aws_sdk_s3::types::Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()?,
            )
            .send()
            .await
            .map_err(|e| fail(&prefix, e))?;
        if let Some(err) = out.errors().first() {
            bail!(
                "s3://{bucket}/{}: {} ({} of {} deletions failed)",
                err.key().unwrap_or("?"),
                err.message().or(err.code()).unwrap_or("delete failed"),
                out.errors().len(),
                batch.len()
            );
        }
        removed.extend(batch.iter().map(|k| format!("{prefix}{k}")));
    }
    Ok(removed)
}

/// Reads small objects (catalog entries) whole, 16 at a time, in the order asked; each result
/// is the object's bytes or the error that named it. Objects above `limit` bytes are refused.
pub fn read_many(
    s: &S3Settings,
    bucket: &str,
    keys: &[String],
    limit: u64,
) -> Result<Vec<Result<Vec<u8>>>> {
    use futures_util::StreamExt;
    runtime()?.block_on(async {
        let client = reading_client(s).await?;
        let reads = keys.iter().map(|key| {
            let client = &client;
            async move {
                let url = format!("s3://{bucket}/{key}");
                let out = client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| fail(&url, e))?;
                if out.content_length().unwrap_or(0) as u64 > limit {
                    bail!("{url}: larger than {limit} bytes");
                }
                let body = out
                    .body
                    .collect()
                    .await
                    .with_context(|| format!("{url}: reading the body"))?;
                Ok(body.into_bytes().to_vec())
            }
        });
        Ok(futures_util::stream::iter(reads)
            .buffered(16)
            .collect::<Vec<_>>()
            .await)
    })
}
