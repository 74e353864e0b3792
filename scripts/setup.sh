#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of xfer from Debian's
# packages. Idempotent: packages already present are skipped, and
# `apt-get update` runs at most once per invocation (and only when something
# is missing). Must run as root (or with sudo available) on Debian 12.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config clang clang-format
  libclang-rt-14-dev
  # libraries
  libgtest-dev libgmock-dev libbenchmark-dev libxxhash-dev libspdlog-dev
  libfmt-dev libcli11-dev libtomlplusplus-dev nlohmann-json3-dev libzstd-dev
  libssl-dev liburing-dev zlib1g-dev libsodium-dev libcurl4-openssl-dev libssh-dev libexpat1-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  # test and benchmark peers / tools
  rsync rclone gnuplot-nox fio time python3 util-linux coreutils openssl
  openssh-server openssh-client iperf3
  # sftp: a peer of bench/sftp.py (pget -n, mirror --parallel)
  lftp
  # http(s): the test server and the download peers (bench/http.py)
  nginx-light curl wget aria2
  # packaging (CPack's .deb) and its tests: man pages, completion scripts
  dpkg-dev man-db groff-base zsh fish
  # the network lab (tools/netlab): namespaces, offloads, its accuracy tests
  iproute2 ethtool iputils-ping
  # the object stores' test servers run on Node and its npm (install_npm_servers)
  nodejs
  # object stores: the peers of bench/objstore.py (rclone is above)
  awscli s3cmd python3-boto3
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# The object stores' test servers, from the npm registry (docs/testing.md):
# s3rver (S3) and Azurite (Azure Blob) in $XFER_NPM_DIR (default
# /opt/xfer-npm). s3rver 3.7.1 drops
# the folders below a folder from a delimited listing (its walk prunes a
# directory two levels under the prefix before reaching its objects, so
# "a/" is missing from the listing of "t/" when only "t/a/b/c" exists):
# that pruning is switched off here; the listing is then S3's. And it
# writes a PUT's body straight under the object's name as it arrives, so
# a request cut mid-body leaves a truncated object, visible even while it
# streams: here it writes to a hidden name and renames when the body is
# whole (Content-Length's count), as S3 publishes an object only whole.
# And it answers a range of an empty object with "bytes 0-0/0" and a
# Content-Length of 1 it never sends: here it answers 416 InvalidRange,
# as S3 does. And its DeleteObjects deletes the keys all at once, each
# delete pruning the folders it empties under the others (a 500, ENOENT):
# here it deletes them one after the other. And it answers UploadPartCopy
# (a part copied from a range of another object) 501 NotImplemented: here
# it is added, written from S3's API reference (docs/s3.md says what that
# tests and what it does not).
install_npm_servers() {
  local dir="${XFER_NPM_DIR:-/opt/xfer-npm}"
  local s3rver="$dir/node_modules/s3rver/lib/stores/filesystem.js"
  if [ ! -f "$s3rver" ]; then
    echo "setup: installing s3rver from npm into $dir"
    $SUDO mkdir -p "$dir"
    $SUDO npm install --silent --no-audit --no-fund --prefix "$dir" s3rver@3.7.1 > /dev/null
  fi
  # Azurite (Azure Blob), its blob service only (tests/servers/azurite.hpp).
  if [ ! -f "$dir/node_modules/azurite/dist/src/blob/main.js" ]; then
    echo "setup: installing azurite from npm into $dir"
    $SUDO mkdir -p "$dir"
    $SUDO npm install --silent --no-audit --no-fund --prefix "$dir" azurite@3.37.0 > /dev/null
  fi
  if ! grep -q "xfer: no pruning" "$s3rver"; then
    $SUDO python3 - "$s3rver" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
old = "          // avoid directories occurring beneath a common prefix\n          return false;"
assert old in s, "s3rver: the listing code is not the one patched"
s = s.replace(old, "          // avoid directories occurring beneath a common prefix\n          return true; // xfer: no pruning")
open(p, "w").write(s)
PY
  fi
  if ! grep -q "xfer: empty range" "$s3rver"; then
    $SUDO python3 - "$s3rver" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
old = "      const lastByte = Math.max(0, Number(metadata['content-length']) - 1);\n"
assert old in s, "s3rver: getObject is not the one patched"
s = s.replace(old, """      // xfer: empty range. A range of an empty object is not satisfiable.
      const ranged = options && (options.start !== undefined || options.end);
      const lastByte = ranged
        ? Number(metadata['content-length']) - 1
        : Math.max(0, Number(metadata['content-length']) - 1);
""")
open(p, "w").write(s)
PY
  fi
  local s3rver_objects="$dir/node_modules/s3rver/lib/controllers/object.js"
  if ! grep -q "xfer: one after the other" "$s3rver_objects"; then
    $SUDO python3 - "$s3rver_objects" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
old = "  await Promise.all(\n    keys.map(async key => {\n"
assert old in s, "s3rver: deleteMultipleObjects is not the one patched"
i = s.index(old)
end = "    }),\n  );\n"
j = s.index(end, i)
body = s[i + len(old):j]
s = s[:i] + "  // xfer: one after the other.\n  for (const key of keys) {\n" + body.replace("      if (!objectExists) return;", "      if (!objectExists) continue;") + "  }\n" + s[j + len(end):]
open(p, "w").write(s)
PY
  fi
  local s3rver_routes="$dir/node_modules/s3rver/lib/routes.js"
  if ! grep -q "xfer: UploadPartCopy" "$s3rver_routes"; then
    $SUDO python3 - "$s3rver_routes" "$s3rver_objects" <<'PY'
import sys
routes, objects = sys.argv[1], sys.argv[2]
s = open(routes).read()
old = """      case 'uploadId':
        if ('x-amz-copy-source' in ctx.headers) {
          throw new S3Error(
            'NotImplemented',
            'A header you provided implies functionality that is not implemented',
          );
        }
        return objectCtrl.uploadPart(ctx);"""
assert old in s, "s3rver: the uploadId route is not the one patched"
s = s.replace(old, """      case 'uploadId':
        // xfer: UploadPartCopy.
        if ('x-amz-copy-source' in ctx.headers) return objectCtrl.uploadPartCopy(ctx);
        return objectCtrl.uploadPart(ctx);""")
open(routes, "w").write(s)
s = open(objects).read()
assert "exports.uploadPart = async function uploadPart(ctx)" in s, "s3rver: no uploadPart"
s += """
// xfer: UploadPartCopy, from S3's API reference: the part is the bytes
// x-amz-copy-source-range (bytes=FIRST-LAST, inclusive, within the object)
// names of x-amz-copy-source (/bucket/key, URL-encoded), refused with 412
// when x-amz-copy-source-if-match is not the source's ETag; the answer is
// a CopyPartResult with the part's ETag.
exports.uploadPartCopy = async function uploadPartCopy(ctx) {
  let copySource = ctx.headers['x-amz-copy-source'];
  copySource = copySource.startsWith('/') ? copySource.slice(1) : copySource;
  const [srcBucket, ...rest] = copySource.split('/');
  const srcKey = decodeURIComponent(rest.join('/'));
  if (!(await ctx.store.existsObject(decodeURIComponent(srcBucket), srcKey))) {
    throw new S3Error('NoSuchKey', 'The specified key does not exist.', { Key: srcKey });
  }
  const metadata = await ctx.store.getMetadata(decodeURIComponent(srcBucket), srcKey);
  const ifMatch = ctx.headers['x-amz-copy-source-if-match'];
  if (ifMatch !== undefined && ifMatch.replace(/"/g, '') !== metadata.etag.replace(/"/g, '')) {
    throw new S3Error('PreconditionFailed',
      'At least one of the pre-conditions you specified did not hold',
      { Condition: 'x-amz-copy-source-If-Match' });
  }
  const size = Number(metadata['content-length']);
  let start = 0;
  let end = size - 1;
  const range = ctx.headers['x-amz-copy-source-range'];
  if (range !== undefined) {
    const m = /^bytes=([0-9]+)-([0-9]+)$/.exec(range);
    if (!m || Number(m[1]) > Number(m[2]) || Number(m[2]) >= size) {
      throw new S3Error('InvalidArgument',
        'The x-amz-copy-source-range value must be of the form bytes=first-last ' +
        'where first and last are the zero-based offsets of the first and last bytes to copy',
        { ArgumentName: 'x-amz-copy-source-range', ArgumentValue: range });
    }
    start = Number(m[1]);
    end = Number(m[2]);
  }
  const object = await ctx.store.getObject(decodeURIComponent(srcBucket), srcKey, { start, end });
  const { md5 } = await ctx.store.putPart(
    ctx.params.bucket, ctx.query.uploadId, ctx.query.partNumber, object.content);
  ctx.body = {
    CopyPartResult: { LastModified: new Date().toISOString(), ETag: JSON.stringify(md5) },
  };
};
"""
open(objects, "w").write(s)
PY
  fi
  if ! grep -q "xfer: atomic put" "$s3rver"; then
    $SUDO python3 - "$s3rver" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
start = "    const [size, md5] = await new Promise((resolve, reject) => {\n      const writeStream = fs.createWriteStream(objectPath);"
end = "          .pipe(writeStream);\n      }\n    });\n"
i = s.find(start)
j = s.find(end, i)
assert i >= 0 and j > i, "s3rver: putObject is not the one patched"
s = s[:i] + """    // xfer: atomic put. The body goes to a hidden name, renamed when whole.
    const [size, md5] = await new Promise((resolve, reject) => {
      const incoming = `${objectPath}.xfer-incoming-${crypto.randomBytes(8).toString('hex')}`;
      const writeStream = fs.createWriteStream(incoming);
      const md5Context = crypto.createHash('md5');
      // A request's Content-Length (a completed multipart upload's body is
      // its parts, read from disk: no count to match).
      const expected = object.content && object.content.headers ? object.size : NaN;
      let totalLength = 0;
      let failed = false;
      const fail = (err) => {
        if (failed) return;
        failed = true;
        writeStream.destroy();
        fs.remove(incoming).then(() => reject(err), () => reject(err));
      };
      writeStream.on('error', fail);
      writeStream.on('finish', () => {
        if (failed) return;
        if (!Number.isNaN(expected) && totalLength !== expected) {
          const e = new Error('IncompleteBody');
          e.code = 'IncompleteBody';
          fail(e);
          return;
        }
        fs.rename(incoming, objectPath).then(
          () => resolve([totalLength, md5Context.digest('hex')]), fail);
      });
      if (Buffer.isBuffer(object.content)) {
        md5Context.update(object.content);
        totalLength = object.content.length;
        writeStream.end(object.content);
      } else {
        object.content.on('aborted', () => fail(new Error('the request was cut')));
        object.content.on('error', fail);
        object.content
          .pipe(
            new Transform({
              transform(chunk, encoding, callback) {
                md5Context.update(chunk, encoding);
                totalLength += chunk.length;
                callback(null, chunk);
              },
            }),
          )
          .on('error', fail)
          .pipe(writeStream);
      }
    });
""" + s[j + len(end):]
open(p, "w").write(s)
PY
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  install_npm_servers
  exit 0
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Servers among the packages (nginx, sshd) must not start on install: the
# tests start their own, on loopback, with their own configs.
made_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d > /dev/null
  $SUDO chmod 755 /usr/sbin/policy-rc.d
  made_policy=1
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
if [ -n "$made_policy" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
install_npm_servers
