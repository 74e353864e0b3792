// The gRPC control channel to an xferd (control.hpp): credentials (TLS or
// plaintext) and the bearer token of each call. Channels are thread-safe;
// a ClientContext is per call.

#include "backend/xfer/control.hpp"

#include <fmt/format.h>

#include "xfer/backend/xfer.hpp"
#include "xfer/core/files.hpp"

namespace xfer {
namespace {

// A CA bundle is a few certificates; the system bundle is about 200 KiB.
constexpr std::size_t kMaxCaBundleBytes = 4 << 20;

}  // namespace

std::string endpoint_name(const Url& url) {
  std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  return fmt::format("{}:{}", host, url.port > 0 ? url.port : kDefaultXferPort);
}

Result<std::unique_ptr<xfer::v1::Xfer::Stub>> make_control_stub(const Url& url,
                                                                const EndpointOptions& options,
                                                                int max_receive_bytes) {
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options.tls || !options.tls_ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca.empty()) {
      auto bundle = read_small_file(options.tls_ca, kMaxCaBundleBytes);
      if (!bundle) {
        Error e = std::move(bundle).error();
        e.operation = "read CA bundle";
        return e;
      }
      ssl.pem_root_certs = std::move(bundle).value();
    }
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(max_receive_bytes);
  return xfer::v1::Xfer::NewStub(grpc::CreateCustomChannel(endpoint_name(url), creds, args));
}

void prepare_call(grpc::ClientContext& ctx, const std::string& token,
                  std::chrono::seconds timeout) {
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
}

}  // namespace xfer
