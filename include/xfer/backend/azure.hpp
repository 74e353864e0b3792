#pragma once
// The az backend: block blobs in Azure Blob Storage (docs/azure.md).
//
//   az://container/blob   NAME:container/blob (a remote of type azure)
//
// Account, key or SAS token, and endpoint come from the profile
// (profile.hpp: the remote, $AZURE_STORAGE_*). Blobs are not files: there
// is no mkdir, no symlink, and a folder is a name prefix. Chunked files go
// up as blocks, one per chunk, committed by one block list, resumable
// across runs from the journal.
//
// Only the CLI's registry has it (BackendRegistry::with_client_backends).

#include <memory>

#include "xfer/backend/backend.hpp"
#include "xfer/backend/registry.hpp"
#include "xfer/core/url.hpp"

namespace xfer {

// A block blob holds at most 50,000 blocks.
inline constexpr std::uint64_t kMaxAzureBlocks = 50'000;

Result<std::unique_ptr<Backend>> make_azure_backend(const Url& url, const Profile& profile,
                                                    const EndpointOptions& options);

}  // namespace xfer
