// XXH3 one-shot and streaming (checksum.hpp). A stream belongs to one
// thread at a time.

#include "xfer/core/checksum.hpp"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace xfer {

std::uint64_t xxh3_64(std::span<const std::byte> data) {
  return XXH3_64bits(data.data(), data.size());
}

struct Xxh3Stream::State {
  XXH3_state_t st;
};

Xxh3Stream::Xxh3Stream() : state_(std::make_unique<State>()) {
  XXH3_64bits_reset(&state_->st);
}
Xxh3Stream::~Xxh3Stream() = default;
Xxh3Stream::Xxh3Stream(Xxh3Stream&&) noexcept = default;
Xxh3Stream& Xxh3Stream::operator=(Xxh3Stream&&) noexcept = default;

void Xxh3Stream::update(std::span<const std::byte> data) {
  XXH3_64bits_update(&state_->st, data.data(), data.size());
}

std::uint64_t Xxh3Stream::digest() const {
  return XXH3_64bits_digest(&state_->st);
}

struct Xxh3Stream128::State {
  XXH3_state_t st;
};

Xxh3Stream128::Xxh3Stream128() : state_(std::make_unique<State>()) {
  XXH3_128bits_reset(&state_->st);
}
Xxh3Stream128::~Xxh3Stream128() = default;
Xxh3Stream128::Xxh3Stream128(Xxh3Stream128&&) noexcept = default;
Xxh3Stream128& Xxh3Stream128::operator=(Xxh3Stream128&&) noexcept = default;

void Xxh3Stream128::update(std::span<const std::byte> data) {
  XXH3_128bits_update(&state_->st, data.data(), data.size());
}

void Xxh3Stream128::reset() {
  XXH3_128bits_reset(&state_->st);
}

std::pair<std::uint64_t, std::uint64_t> Xxh3Stream128::digest() const {
  const XXH128_hash_t h = XXH3_128bits_digest(&state_->st);
  return {h.high64, h.low64};
}

}  // namespace xfer
