#pragma once
// The s3 backend: objects in any S3-compatible store (docs/s3.md).
//
//   s3://bucket/key   NAME:bucket/key (a remote of type s3)
//
// Endpoint, region and keys come from the profile (profile.hpp: the remote,
// $AWS_*, ~/.aws). Objects are not files: there is no mkdir, no symlink,
// and a folder is a key prefix. Chunked files go up as one multipart
// upload, one chunk per part, resumable across runs from the journal.
//
// Only the CLI's registry has it (BackendRegistry::with_client_backends).

#include <memory>

#include "xfer/backend/backend.hpp"
#include "xfer/backend/registry.hpp"
#include "xfer/core/url.hpp"

namespace xfer {

// S3's part rules: every part but the last at least 5 MiB, at most 10,000.
inline constexpr std::uint64_t kS3MinPart = 5ull << 20;
inline constexpr std::uint64_t kS3MaxParts = 10'000;

Result<std::unique_ptr<Backend>> make_s3_backend(const Url& url, const Profile& profile,
                                                 const EndpointOptions& options);

// gs://bucket/key: Google Cloud Storage through its S3-compatible XML API
// with HMAC keys: the same code with GCS's endpoint
// (https://storage.googleapis.com), region "auto" and its own places for
// the keys (the remote, ~/.boto). docs/gcs.md says what is tested.
Result<std::unique_ptr<Backend>> make_gcs_backend(const Url& url, const Profile& profile,
                                                  const EndpointOptions& options);

}  // namespace xfer
