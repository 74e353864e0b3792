// The reduced-capability wrapper of reduced_backend.hpp: a Backend, a Source
// without a native handle and a Sink that takes its bytes in order only.
// Called by the conformance suite's test threads, several at once on one
// Sink in the parallel-write tests; the Sink's lock keeps the order check
// and the write it admits together.

#include "reduced_backend.hpp"

#include <fmt/format.h>

#include <mutex>
#include <string>
#include <utility>

namespace xfer {
namespace {

// The wrapped backend's capabilities less the five of reduced_backend.hpp.
Capabilities reduced_capabilities(const Capabilities& inner) {
  Capabilities caps = inner;
  caps.random_writes = false;
  caps.parallel_writers = false;
  caps.resume = false;
  caps.symlinks = false;
  caps.zero_copy_send = false;
  caps.basis_copy = false;  // copy_basis is refused
  return caps;
}

class ReducedSource final : public Source {
 public:
  explicit ReducedSource(std::unique_ptr<Source> inner) : inner_(std::move(inner)) {}
  const FileAttrs& attrs() const override { return inner_->attrs(); }
  Result<std::size_t> read_at(Offset offset, std::span<std::byte> buf) override {
    return inner_->read_at(offset, buf);
  }
  Status check_unchanged() override { return inner_->check_unchanged(); }
  Result<Extent> data_extent(Offset offset) override { return inner_->data_extent(offset); }
  // No zero_copy_send: native_handle() keeps the base's -1.

 private:
  std::unique_ptr<Source> inner_;
};

// No random_writes: every write_at must start where the accepted bytes end.
// copy_from keeps the base's kUnsupported (it would write around the check).
class SequentialSink final : public Sink {
 public:
  SequentialSink(std::unique_ptr<Sink> inner, std::string path)
      : inner_(std::move(inner)), path_(std::move(path)) {}

  Status write_at(Offset offset, std::span<const std::byte> data) override {
    std::lock_guard lock(mutex_);
    if (offset.get() != next_) {
      return make_error(ErrorCode::kUnsupported, "write_at", path_,
                        fmt::format("offset {} out of order: this backend writes sequentially, "
                                    "the next byte is {}",
                                    offset.get(), next_));
    }
    XFER_TRY(inner_->write_at(offset, data));
    next_ += data.size();
    return ok_status();
  }
  Result<std::size_t> read_back(Offset offset, std::span<std::byte> buf) override {
    return inner_->read_back(offset, buf);
  }
  // A store that cannot copy inside itself (the delta is then sent whole).
  Status copy_basis(Offset, Offset, Length) override {
    return make_error(ErrorCode::kUnsupported, "copy_basis", path_);
  }
  Status commit() override { return inner_->commit(); }
  Status abort() override { return inner_->abort(); }
  // No resume: suspend() keeps the base's abort().

 private:
  std::unique_ptr<Sink> inner_;
  const std::string path_;
  std::mutex mutex_;
  std::uint64_t next_ = 0;  // guarded by mutex_
};

class ReducedBackend final : public Backend {
 public:
  explicit ReducedBackend(std::unique_ptr<Backend> inner)
      : inner_(std::move(inner)), caps_(reduced_capabilities(inner_->capabilities())) {}

  const Capabilities& capabilities() const override { return caps_; }
  LinkEstimate link_estimate() const override { return inner_->link_estimate(); }
  std::string describe() const override { return "reduced " + inner_->describe(); }
  void cancel() override { inner_->cancel(); }

  Result<FileAttrs> stat(std::string_view path) override { return inner_->stat(path); }
  Status list(std::string_view path, const ListOptions& options, const EntrySink& sink) override {
    return inner_->list(path, options, sink);
  }
  Status mkdir(std::string_view path, bool parents) override {
    return inner_->mkdir(path, parents);
  }
  Status remove(std::string_view path, bool recursive) override {
    return inner_->remove(path, recursive);
  }
  Status rename(std::string_view from, std::string_view to) override {
    return inner_->rename(from, to);
  }
  Status touch(std::string_view path, std::optional<std::int64_t> mtime_ns) override {
    return inner_->touch(path, mtime_ns);
  }
  Status symlink(std::string_view target, std::string_view path, const FileAttrs& attrs) override {
    (void)target, (void)attrs;
    return make_error(ErrorCode::kUnsupported, "symlink", path, "this backend stores no symlinks");
  }
  Status set_attrs(std::string_view path, const FileAttrs& attrs) override {
    return inner_->set_attrs(path, attrs);
  }

  Result<std::unique_ptr<Source>> open_source(std::string_view path) override {
    XFER_ASSIGN_OR_RETURN(auto inner, inner_->open_source(path));
    return std::unique_ptr<Source>(std::make_unique<ReducedSource>(std::move(inner)));
  }
  Result<std::unique_ptr<Sink>> open_sink(std::string_view path,
                                          const SinkOptions& options) override {
    if (!options.resume_name.empty()) {
      return make_error(ErrorCode::kUnsupported, "open_sink", path,
                        "this backend keeps no resumable partials");
    }
    XFER_ASSIGN_OR_RETURN(auto inner, inner_->open_sink(path, options));
    return std::unique_ptr<Sink>(
        std::make_unique<SequentialSink>(std::move(inner), std::string(path)));
  }

 private:
  std::unique_ptr<Backend> inner_;
  const Capabilities caps_;
};

}  // namespace

std::unique_ptr<Backend> make_reduced_backend(std::unique_ptr<Backend> inner) {
  return std::make_unique<ReducedBackend>(std::move(inner));
}

}  // namespace xfer
