"""What the local S3 server can take, measured with a client that does almost nothing.

Usage: s3-limit.py FILE BUCKET KEY N

FILE's bytes are read into memory, then uploaded as one object the way a stream of unknown
length must be (weir-put and `aws s3 cp -` both do it so): a multipart upload of 8 MiB parts,
N at once, then its completion; then the object KEY (the same bytes, stored before) is read
back by N ranged GETs at once, each into memory. The requests go to presigned URLs (botocore
signs the URL, not the payload), over plain http.client on N threads, so the client neither
hashes nor copies what it sends and reads: what is left is the server's own cost (and the
kernel's), on the same cores weir and the AWS CLI share with it. Prints three throughputs in
MB/s: the multipart upload, the GETs, and (for scale) the same bytes PUT as N whole objects at
once, which skips the completion's copy of every part into the object.
"""

import http.client
import os
import sys
import threading
import time
import urllib.parse

import botocore.session


def client():
    s = botocore.session.get_session()
    return s.create_client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
    )


def request(url, method, body=None, headers=None, into=None):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    conn.request(method, u.path + "?" + u.query, body=body, headers=headers or {})
    r = conn.getresponse()
    if into is None:
        r.read()
    else:
        got = 0
        while got < len(into):
            n = r.readinto(into[got:])
            if n == 0:
                break
            got += n
        if got != len(into):
            raise SystemExit(f"{method} {u.path}: {got} bytes of {len(into)}")
    if r.status not in (200, 206):
        raise SystemExit(f"{method} {u.path}: HTTP {r.status}")
    etag = r.getheader("ETag")
    conn.close()
    return etag


def timed(jobs):
    threads = [threading.Thread(target=j) for j in jobs]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - start


def main():
    path, bucket, key, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with open(path, "rb") as f:
        data = memoryview(f.read())
    size = len(data)
    spans = [(i * size // n, (i + 1) * size // n) for i in range(n)]
    c = client()

    def put(i, a, b):
        url = c.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": f"limit/{i}"}, ExpiresIn=3600
        )
        return lambda: request(url, "PUT", data[a:b], {"Content-Length": str(b - a)})

    back = bytearray(size)
    view = memoryview(back)
    get_url = c.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600
    )

    def get(a, b):
        return lambda: request(
            get_url, "GET", headers={"Range": f"bytes={a}-{b - 1}"}, into=view[a:b]
        )

    multipart_s = timed([lambda: multipart(c, bucket, "limit/multipart", data, n)])
    get_s = timed([get(a, b) for (a, b) in spans])
    if back != data:
        raise SystemExit(f"{key} read back differs from {path}")
    put_s = timed([put(i, a, b) for i, (a, b) in enumerate(spans)])
    for k in [f"limit/{i}" for i in range(n)] + ["limit/multipart"]:
        c.delete_object(Bucket=bucket, Key=k)
    mb = size / 1e6
    print(f"{mb / multipart_s:.0f} {mb / get_s:.0f} {mb / put_s:.0f}")


PART = 8 << 20


def multipart(c, bucket, key, data, n):
    """One multipart upload of `data` in 8 MiB parts, `n` at once, then its completion."""
    upload = c.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = [(i + 1, i * PART, min((i + 1) * PART, len(data))) for i in range((len(data) + PART - 1) // PART)]
    etags = {}
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not parts:
                    return
                number, a, b = parts.pop(0)
            url = c.generate_presigned_url(
                "upload_part",
                Params={"Bucket": bucket, "Key": key, "UploadId": upload, "PartNumber": number},
                ExpiresIn=3600,
            )
            etags[number] = request(url, "PUT", data[a:b], {"Content-Length": str(b - a)})

    timed([worker for _ in range(n)])
    c.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": k, "ETag": etags[k]} for k in sorted(etags)]},
    )


if __name__ == "__main__":
    main()
