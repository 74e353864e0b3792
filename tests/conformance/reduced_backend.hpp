#pragma once
// A backend with the capabilities an object store lacks, for the conformance
// suite: it wraps a real backend (the local one there) and declares
// random_writes, parallel_writers, resume, symlinks and zero_copy_send
// false, then behaves as include/xfer/backend/backend.hpp says a backend
// without them must (kUnsupported for what it cannot do, nothing left
// behind). So the kUnsupported half of the contract runs on every test of
// the suite, before a real object store exists.
//
// Threading: as any Backend; each call is passed on to the wrapped backend,
// and a Sink's write order is checked under the sink's own lock.

#include <memory>

#include "xfer/backend/backend.hpp"

namespace xfer {

std::unique_ptr<Backend> make_reduced_backend(std::unique_ptr<Backend> inner);

}  // namespace xfer
