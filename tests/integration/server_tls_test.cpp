// Control-channel TLS: xferd with [tls] cert/key; clients that trust the CA
// work (namespace and data), clients that speak plaintext or do not trust it
// get a clear error.

#include <cstdlib>

#include "harness.hpp"
#include "xferd_harness.hpp"

namespace xfer_it {
namespace {

class ServerTls : public XferTest {};

TEST_F(ServerTls, TrustedClientsWorkOthersAreRefused) {
  if (xferd_bin().empty()) GTEST_SKIP() << "XFERD_BIN not set";
  const fs::path pki = tmp() / "pki";
  fs::create_directories(pki);
  auto gen = run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", (pki / "key.pem").string(),
                  "-out", (pki / "cert.pem").string(), "-days", "2", "-subj", "/CN=localhost",
                  "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"});
  ASSERT_EQ(gen.exit_code, 0) << gen.describe();
  XferdOptions opt;
  opt.extra_toml = "[tls]\ncert = \"" + (pki / "cert.pem").string() + "\"\nkey = \"" +
                   (pki / "key.pem").string() + "\"\n";
  XferdProcess server(tmp() / "server", opt);
  ASSERT_TRUE(server.start());
  const std::string token = server.token("/", true);

  std::mt19937_64 rng(5);
  const fs::path src = tmp() / "f.bin";
  write_file(src, random_bytes(rng, 3 << 20));
  const std::string ca = (pki / "cert.pem").string();

  auto up = run_xfer({"cp", src.string(), server.url("/f.bin"), "--token", token, "--tls-ca", ca});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  EXPECT_TRUE(files_equal(src, server.root() / "f.bin"));
  auto ls = run_xfer({"ls", server.url("/"), "--token", token, "--tls-ca", ca});
  ASSERT_EQ(ls.exit_code, 0) << ls.describe();
  EXPECT_NE(ls.out.find("f.bin"), std::string::npos) << ls.out;

  // Plaintext client against a TLS server: refused, and told why.
  auto plain = run_xfer({"ls", server.url("/"), "--token", token}, std::chrono::seconds(60));
  EXPECT_NE(plain.exit_code, 0);
  EXPECT_TRUE(icontains(plain.err, "TLS")) << plain.err;

  // A client that does not trust the server's certificate.
  const fs::path other = tmp() / "other";
  fs::create_directories(other);
  auto gen2 =
      run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
           "-nodes", "-keyout", (other / "key.pem").string(), "-out", (other / "cert.pem").string(),
           "-days", "2", "-subj", "/CN=localhost"});
  ASSERT_EQ(gen2.exit_code, 0) << gen2.describe();
  auto untrusted = run_xfer({"cp", src.string(), server.url("/g.bin"), "--token", token, "--tls-ca",
                             (other / "cert.pem").string()},
                            std::chrono::seconds(60));
  EXPECT_NE(untrusted.exit_code, 0);
  EXPECT_FALSE(lexists(server.root() / "g.bin"));
}

// Server-to-server control traffic carries an issued write token: it can be
// sealed with TLS too (jobs.tls_ca), and without it a TLS peer is not reached.
TEST_F(ServerTls, ThirdPartyJobsReachTlsPeersOverTls) {
  ASSERT_FALSE(xferd_bin().empty()) << "XFERD_BIN not set";
  const fs::path pki = tmp() / "pki";
  fs::create_directories(pki);
  auto gen = run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", (pki / "key.pem").string(),
                  "-out", (pki / "cert.pem").string(), "-days", "2", "-subj", "/CN=localhost",
                  "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"});
  ASSERT_EQ(gen.exit_code, 0) << gen.describe();
  const std::string ca = (pki / "cert.pem").string();
  const std::string tls =
      "[tls]\ncert = \"" + ca + "\"\nkey = \"" + (pki / "key.pem").string() + "\"\n";
  XferdOptions bo;
  bo.extra_toml = tls;
  XferdProcess b(tmp() / "B", bo);
  ASSERT_TRUE(b.start());
  XferdOptions ao;
  ao.extra_toml =
      tls + "[jobs]\npeers = [\"" + b.control_address() + "\"]\ntls_ca = \"" + ca + "\"\n";
  XferdProcess a(tmp() / "A", ao);
  ASSERT_TRUE(a.start());
  XferdOptions plain_o;
  plain_o.extra_toml = tls + "[jobs]\npeers = [\"" + b.control_address() + "\"]\n";
  XferdProcess plain(tmp() / "P", plain_o);
  ASSERT_TRUE(plain.start());

  std::mt19937_64 rng(6);
  write_file(a.root() / "x.bin", random_bytes(rng, 2 << 20));
  write_file(plain.root() / "x.bin", random_bytes(rng, 1 << 20));
  const std::string token = a.token("/", true);  // same secret on all three
  auto cp = run_xfer({"cp", a.url("/x.bin"), b.url("/x.bin"), "--token", token, "--tls-ca", ca},
                     std::chrono::seconds(60));
  ASSERT_EQ(cp.exit_code, 0) << cp.describe();
  EXPECT_TRUE(files_equal(a.root() / "x.bin", b.root() / "x.bin"));
  auto no_tls =
      run_xfer({"cp", plain.url("/x.bin"), b.url("/y.bin"), "--token", token, "--tls-ca", ca},
               std::chrono::seconds(60));
  EXPECT_NE(no_tls.exit_code, 0) << no_tls.describe();
  EXPECT_TRUE(icontains(no_tls.err, "TLS")) << no_tls.describe();
  EXPECT_FALSE(lexists(b.root() / "y.bin"));
}

}  // namespace
}  // namespace xfer_it
