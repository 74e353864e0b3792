#pragma once
// Backends are created from URLs by scheme. Bare paths and file:// map to the
// local backend; later backends register their own schemes.

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "xfer/backend/backend.hpp"

namespace xfer {

using BackendFactory = std::function<Result<std::unique_ptr<Backend>>(const Url&)>;

// Thread-safe.
class BackendRegistry {
 public:
  // The process-wide registry, with the built-in backends registered.
  static BackendRegistry& instance();

  void register_scheme(std::string scheme, BackendFactory factory);
  bool has_scheme(const std::string& scheme) const;
  // kUnsupported naming the scheme when nothing is registered for it.
  Result<std::unique_ptr<Backend>> create(const Url& url) const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, BackendFactory> factories_;
};

}  // namespace xfer
