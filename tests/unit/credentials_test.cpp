// Sealed secrets, the credentials file, named remotes and endpoint profiles
// (core/secrets.hpp, backend/credentials.hpp, backend/profile.hpp): what a
// user would check — a secret opens with its passphrase and nothing else, a
// readable credentials file is refused, NAME:path reaches the remote, and
// the conventional places (environment, ~/.ssh/config, ~/.aws) fill a
// profile in the documented order.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "xfer/backend/credentials.hpp"
#include "xfer/backend/profile.hpp"
#include "xfer/backend/registry.hpp"
#include "xfer/core/secrets.hpp"
#include "xfer/core/url.hpp"

namespace xfer {
namespace {

namespace fs = std::filesystem;

// Cheap Argon2 for tests: the format and the checks are the same.
constexpr SealCost kCheap{1, 8192};

class TempDir {
 public:
  TempDir() {
    path_ = fs::path(::testing::TempDir()) /
            ("cred-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write(const fs::path& p, const std::string& text, mode_t mode = 0600) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
  ::chmod(p.c_str(), mode);
}

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(Secrets, SealedSecretOpensOnlyWithItsPassphrase) {
  auto sealed = seal_secret("s3cr3t-token", "correct horse", kCheap);
  ASSERT_TRUE(sealed.ok()) << sealed.error().message();
  EXPECT_TRUE(is_sealed(*sealed));
  EXPECT_EQ(sealed->find("s3cr3t"), std::string::npos) << "the secret shows through";
  auto opened = unseal_secret(*sealed, "correct horse");
  ASSERT_TRUE(opened.ok()) << opened.error().message();
  EXPECT_EQ(*opened, "s3cr3t-token");
  auto wrong = unseal_secret(*sealed, "wrong horse");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, ErrorCode::kPermission);
  EXPECT_NE(wrong.error().message().find("wrong passphrase"), std::string::npos);
  // Two seals of one secret differ (fresh salt and nonce).
  EXPECT_NE(*seal_secret("s3cr3t-token", "correct horse", kCheap), *sealed);
}

TEST(Secrets, TamperedOrMalformedValuesAreRefused) {
  auto sealed = seal_secret("token", "pw", kCheap);
  ASSERT_TRUE(sealed.ok());
  std::string flipped = *sealed;
  flipped[flipped.size() - 3] = flipped[flipped.size() - 3] == 'A' ? 'B' : 'A';
  EXPECT_EQ(unseal_secret(flipped, "pw").error().code, ErrorCode::kPermission);
  for (const std::string& bad :
       {std::string("plain"), std::string("$xfer-sealed$"),
        std::string("$xfer-sealed$v2$a$b$c$d$e"),
        std::string("$xfer-sealed$v1$argon2id$t=2,m=65536$$$"),
        // Costs a crafted file might ask for: refused before any work.
        std::string("$xfer-sealed$v1$argon2id$t=2,m=99999999$AAAAAAAAAAAAAAAAAAAAAA$"
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA"),
        std::string("$xfer-sealed$v1$argon2id$t=1000,m=8$AAAAAAAAAAAAAAAAAAAAAA$"
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")}) {
    auto r = unseal_secret(bad, "pw");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << bad << ": " << r.error().message();
  }
  EXPECT_FALSE(seal_secret("x", "", kCheap).ok()) << "an empty passphrase protects nothing";
}

TEST(CredentialStore, SavedPrivateAndReadBack) {
  TempDir dir;
  const std::string path = (dir.path() / "new" / "credentials.toml").string();
  auto store = CredentialStore::load(path);
  ASSERT_TRUE(store.ok()) << "a missing file is an empty store";
  EXPECT_TRUE(store->remotes().empty());
  ASSERT_TRUE(store->put_remote({"lab", "xfer", {{"host", "10.0.0.2"}, {"token", "t0k"}}}).ok());
  ASSERT_TRUE(store->save().ok());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir.path() / "new").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u) << "the folder it made is private too";
  auto back = CredentialStore::load(path);
  ASSERT_TRUE(back.ok()) << back.error().message();
  ASSERT_NE(back->remote("lab"), nullptr);
  EXPECT_EQ(back->remote("lab")->fields.at("token"), "t0k");
  EXPECT_TRUE(back->remove_remote("lab"));
  EXPECT_FALSE(back->remove_remote("lab"));
}

TEST(CredentialStore, ReadableByOthersIsRefusedLikeSsh) {
  TempDir dir;
  const fs::path path = dir.path() / "credentials.toml";
  write(path, "[\"h:1\"]\ntoken = \"t\"\n", 0644);
  auto r = CredentialStore::load(path.string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kPermission);
  EXPECT_NE(r.error().message().find("chmod 600"), std::string::npos) << r.error().message();
  ::chmod(path.c_str(), 0640);
  EXPECT_FALSE(CredentialStore::load(path.string()).ok());
  ::chmod(path.c_str(), 0600);
  auto ok = CredentialStore::load(path.string());
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  EXPECT_EQ(ok->endpoint_token("h:1"), "t");
  // A symlink in its place is not followed.
  const fs::path link = dir.path() / "link.toml";
  fs::create_symlink(path, link);
  EXPECT_FALSE(CredentialStore::load(link.string()).ok());
}

TEST(CredentialStore, MalformedFilesNameTheProblem) {
  for (const std::string& text :
       {std::string("[remotes.lab]\ntype = \"ftp\"\n"),
        std::string("[remotes.lab]\ntype = \"xfer\"\n"),
        std::string("[remotes.lab]\ntype = \"xfer\"\nhost = \"h\"\nbogus = \"1\"\n"),
        std::string("[remotes.lab]\ntype = \"xfer\"\nhost = 5\n"),
        std::string("[remotes.file]\ntype = \"xfer\"\nhost = \"h\"\n"),
        std::string("remotes = 3\n"), std::string("[remotes\n")}) {
    auto r = CredentialStore::parse(text, "c.toml");
    EXPECT_FALSE(r.ok()) << text;
    if (!r.ok()) {
      EXPECT_NE(r.error().message().find("line"), std::string::npos) << r.error().message();
    }
  }
}

TEST(CredentialStore, SealAllThenUnsealAllRestoresEverySecret) {
  auto store = CredentialStore::parse(
      "[remotes.lab]\ntype = \"xfer\"\nhost = \"h\"\ntoken = \"tok!1\"\n"
      "[remotes.bucket]\ntype = \"s3\"\nregion = \"eu\"\nsecret_access_key = \"key!2\"\n"
      "[\"h:7400\"]\ntoken = \"tok!3\"\n",
      "c.toml");
  ASSERT_TRUE(store.ok()) << store.error().message();
  EXPECT_TRUE(store->any_plain_secret());
  ASSERT_TRUE(store->seal_all("pw", kCheap).ok());
  EXPECT_FALSE(store->any_plain_secret());
  const std::string text = store->to_text();
  // '!' is never in a sealed value's base64: a find is the plain secret.
  EXPECT_EQ(text.find("tok!1"), std::string::npos) << text;
  EXPECT_EQ(text.find("key!2"), std::string::npos) << text;
  EXPECT_EQ(text.find("tok!3"), std::string::npos) << text;
  EXPECT_NE(text.find("region = 'eu'"), std::string::npos) << "only secrets are sealed\n" << text;
  CredentialStore copy = *store;
  EXPECT_EQ(copy.unseal_all("nope").error().code, ErrorCode::kPermission);
  EXPECT_FALSE(copy.any_plain_secret()) << "a failed unseal changes nothing";
  ASSERT_TRUE(store->unseal_all("pw").ok());
  EXPECT_EQ(store->remote("lab")->fields.at("token"), "tok!1");
  EXPECT_EQ(store->remote("bucket")->fields.at("secret_access_key"), "key!2");
  EXPECT_EQ(store->endpoint_token("h:7400"), "tok!3");
}

TEST(Remotes, NameColonPathReachesTheRemote) {
  auto store = CredentialStore::parse(
      "[remotes.lab]\ntype = \"xfer\"\nhost = \"10.0.0.2\"\nport = \"7500\"\n", "c.toml");
  ASSERT_TRUE(store.ok());
  auto url = expand_remote("lab:/data/x", *store);
  ASSERT_TRUE(url.has_value());
  EXPECT_EQ(url->scheme, "xfer");
  EXPECT_EQ(url->host, "10.0.0.2");
  EXPECT_EQ(url->port, 7500);
  EXPECT_EQ(url->path, "/data/x");
  EXPECT_EQ(url->remote, "lab");
  EXPECT_EQ(url->to_string(), "lab:/data/x");
  EXPECT_EQ(expand_remote("lab:rel/y/", *store)->path, "/rel/y/");
  EXPECT_TRUE(expand_remote("lab:rel/y/", *store)->trailing_slash);
  // Not remotes: local paths that happen to hold a ':'.
  EXPECT_FALSE(expand_remote("other:/x", *store).has_value());
  EXPECT_FALSE(expand_remote("./lab:/x", *store).has_value());
  EXPECT_FALSE(expand_remote("dir/lab:x", *store).has_value());
  EXPECT_FALSE(expand_remote("xfer://h/x", *store).has_value());
  EXPECT_FALSE(validate_remote_name("xfer").ok()) << "a scheme name would shadow URLs";
  EXPECT_FALSE(validate_remote_name("a b").ok());
  EXPECT_FALSE(validate_remote_name("9lab").ok());
  EXPECT_TRUE(validate_remote_name("lab-2_b").ok());
}

TEST(Remotes, RegistryParsesRemotesAndRefusesAnUnreadableFile) {
  TempDir dir;
  const fs::path path = dir.path() / "credentials.toml";
  write(path, "[remotes.lab]\ntype = \"xfer\"\nhost = \"127.0.0.1\"\n");
  auto registry = BackendRegistry::with_builtins();
  registry->set_credentials(std::make_shared<Credentials>(path.string()));
  auto url = registry->parse("lab:/x");
  ASSERT_TRUE(url.ok()) << url.error().message();
  EXPECT_EQ(url->scheme, "xfer");
  // A name that is no remote is refused, never taken for a local file.
  auto unknown = registry->parse("notaremote:/x");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(registry->parse("./notaremote:/x")->scheme, "file");
  EXPECT_EQ(registry->parse("/abs/notaremote:/x")->scheme, "file");
  auto other = BackendRegistry::with_builtins();
  ::chmod(path.c_str(), 0644);
  other->set_credentials(std::make_shared<Credentials>(path.string()));
  auto refused = other->parse("lab:/x");
  ASSERT_FALSE(refused.ok()) << "lab:/x must not become a local file when the file is unreadable";
  EXPECT_EQ(refused.error().code, ErrorCode::kPermission);
}

TEST(Profiles, XferTokenPrecedence) {
  TempDir dir;
  const fs::path path = dir.path() / "credentials.toml";
  write(path,
        "[remotes.lab]\ntype = \"xfer\"\nhost = \"h\"\ntoken = \"from-remote\"\n"
        "[\"h:7400\"]\ntoken = \"from-table\"\n");
  Credentials creds(path.string());
  auto store = creds.store();
  ASSERT_TRUE(store.ok());
  const Url remote = *expand_remote("lab:/", **store);
  const Url plain = *parse_url("xfer://h/");
  ScopedEnv no_env("XFER_TOKEN", nullptr);
  EXPECT_EQ(resolve_profile(remote, &creds, "from-flag")->get("token"), "from-flag");
  EXPECT_EQ(resolve_profile(remote, &creds, "")->get("token"), "from-remote");
  EXPECT_EQ(resolve_profile(plain, &creds, "")->get("token"), "from-table");
  {
    ScopedEnv env("XFER_TOKEN", "from-env");
    EXPECT_EQ(resolve_profile(remote, &creds, "")->get("token"), "from-remote");
    EXPECT_EQ(resolve_profile(plain, &creds, "")->get("token"), "from-env");
    ProfileEnvironment closed;
    closed.ambient = false;  // xferd's jobs: only what the request carries
    EXPECT_EQ(resolve_profile(plain, nullptr, "", closed)->get("token"), "");
  }
}

TEST(Profiles, SealedRemoteTokenOpensWithThePassphrase) {
  TempDir dir;
  const fs::path path = dir.path() / "credentials.toml";
  auto store = CredentialStore::parse(
      "[remotes.lab]\ntype = \"xfer\"\nhost = \"h\"\ntoken = \"T\"\n", path.string());
  ASSERT_TRUE(store->seal_all("pw", kCheap).ok());
  ASSERT_TRUE(store->save().ok());
  const Url url = *expand_remote("lab:/", *store);
  ScopedEnv none("XFER_PASSPHRASE", nullptr);
  Credentials no_pass(path.string(), [] {
    return Result<std::string>(make_error(ErrorCode::kUnavailable, "p", "", "no terminal"));
  });
  auto missing = resolve_profile(url, &no_pass, "");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message().find("XFER_PASSPHRASE"), std::string::npos);
  Credentials wrong(path.string(), [] { return Result<std::string>(std::string("bad")); });
  EXPECT_EQ(resolve_profile(url, &wrong, "").error().code, ErrorCode::kPermission);
  ScopedEnv env("XFER_PASSPHRASE", "pw");
  Credentials right(path.string());
  auto p = resolve_profile(url, &right, "");
  ASSERT_TRUE(p.ok()) << p.error().message();
  EXPECT_EQ(p->get("token"), "T");
}

TEST(Profiles, UrlQueryParametersAreCheckedAndSecretsStayOutOfUrls) {
  auto url = parse_url("s3://bucket/key?region=eu-west-1&endpoint=http%3A%2F%2F127.0.0.1%3A9000");
  ASSERT_TRUE(url.ok()) << url.error().message();
  EXPECT_EQ(url->path, "/key");
  ProfileEnvironment env;
  env.ambient = false;
  auto p = resolve_profile(*url, nullptr, "", env);
  ASSERT_TRUE(p.ok()) << p.error().message();
  EXPECT_EQ(p->get("region"), "eu-west-1");
  EXPECT_EQ(p->get("endpoint"), "http://127.0.0.1:9000");
  EXPECT_FALSE(resolve_profile(*parse_url("s3://b/k?colour=red"), nullptr, "", env).ok());
  auto secret = resolve_profile(*parse_url("s3://b/k?secret_access_key=x"), nullptr, "", env);
  ASSERT_FALSE(secret.ok());
  EXPECT_NE(secret.error().message().find("credentials.toml"), std::string::npos);
  // A '?' in a remote path is written %3F and prints back that way.
  auto q = parse_url("xfer://h/a%3Fb?tls=true");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->path, "/a?b");
  EXPECT_EQ(parse_url(q->to_string())->path, "/a?b");
  EXPECT_FALSE(parse_url("xfer://h/x?=1").ok());
  EXPECT_FALSE(parse_url("xfer://bad host/x").ok());
}

TEST(Profiles, AwsFromEnvironmentThenFiles) {
  TempDir home;
  write(home.path() / ".aws" / "credentials",
        "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = FILESECRET\n"
        "[work]\naws_access_key_id = WORKKEY\naws_secret_access_key = WORKSECRET\n");
  write(home.path() / ".aws" / "config",
        "[default]\nregion = eu-north-1\n[profile work]\nregion = us-east-2\n");
  ProfileEnvironment env;
  env.home = home.path().string();
  ScopedEnv a("AWS_ACCESS_KEY_ID", nullptr), b("AWS_SECRET_ACCESS_KEY", nullptr),
      c("AWS_REGION", nullptr), d("AWS_DEFAULT_REGION", nullptr), e("AWS_PROFILE", nullptr),
      f("AWS_SESSION_TOKEN", nullptr), g("AWS_ENDPOINT_URL", nullptr),
      h("AWS_SHARED_CREDENTIALS_FILE", nullptr), i("AWS_CONFIG_FILE", nullptr);
  auto p = resolve_profile(*parse_url("s3://bucket/k"), nullptr, "", env);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->get("access_key_id"), "FILEKEY");
  EXPECT_EQ(p->get("secret_access_key"), "FILESECRET");
  EXPECT_EQ(p->get("region"), "eu-north-1");
  {
    ScopedEnv profile("AWS_PROFILE", "work");
    auto w = resolve_profile(*parse_url("s3://bucket/k"), nullptr, "", env);
    EXPECT_EQ(w->get("access_key_id"), "WORKKEY");
    EXPECT_EQ(w->get("region"), "us-east-2");
  }
  ScopedEnv key("AWS_ACCESS_KEY_ID", "ENVKEY"), region("AWS_REGION", "ap-south-1");
  auto v = resolve_profile(*parse_url("s3://bucket/k?region=sa-east-1"), nullptr, "", env);
  EXPECT_EQ(v->get("access_key_id"), "ENVKEY") << "the environment before the files";
  EXPECT_EQ(v->get("region"), "sa-east-1") << "the URL before the environment";
  EXPECT_EQ(v->origins.at("access_key_id"), "$AWS_ACCESS_KEY_ID");
}

TEST(Profiles, AzureFromEnvironment) {
  ScopedEnv a("AZURE_STORAGE_ACCOUNT", "acct"), b("AZURE_STORAGE_KEY", "k3y"),
      c("AZURE_STORAGE_SAS_TOKEN", nullptr), d("AZURE_STORAGE_CONNECTION_STRING", nullptr);
  auto p = resolve_profile(*parse_url("azure://container/blob"), nullptr, "");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->get("account"), "acct");
  EXPECT_EQ(p->get("key"), "k3y");
}

TEST(Profiles, SshConfigLikeSsh) {
  const std::string config =
      "# comment\n"
      "Host bastion *.lab !secret.lab\n"
      "  HostName 10.1.2.3\n"
      "  User alice\n"
      "  Port=2222\n"
      "Host secret.lab\n"
      "  User root\n"
      "Match host anything\n"
      "  User mallory\n"
      "Host *\n"
      "  User fallback\n"
      "  IdentityFile ~/.ssh/id_ed25519\n";
  auto b = ssh_config_for(config, "bastion");
  EXPECT_EQ(b["host"], "10.1.2.3");
  EXPECT_EQ(b["user"], "alice") << "the first value obtained wins";
  EXPECT_EQ(b["port"], "2222");
  EXPECT_EQ(b["key_file"], "~/.ssh/id_ed25519");
  auto s = ssh_config_for(config, "secret.lab");
  EXPECT_EQ(s.count("host"), 0u) << "negated by !secret.lab";
  EXPECT_EQ(s["user"], "root");
  EXPECT_EQ(ssh_config_for(config, "other")["user"], "fallback");

  TempDir home;
  write(home.path() / ".ssh" / "config", config);
  ProfileEnvironment env;
  env.home = home.path().string();
  ScopedEnv agent("SSH_AUTH_SOCK", "/run/agent.sock");
  auto p = resolve_profile(*parse_url("sftp://bastion/data"), nullptr, "", env);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->get("host"), "10.1.2.3") << "the alias resolves to its HostName";
  EXPECT_EQ(p->get("key_file"), (home.path() / ".ssh/id_ed25519").string());
  EXPECT_EQ(p->get("agent"), "/run/agent.sock");
  auto u = resolve_profile(*parse_url("sftp://bob@bastion:22/data"), nullptr, "", env);
  EXPECT_EQ(u->get("user"), "bob") << "the URL's user before ~/.ssh/config";
  EXPECT_EQ(u->get("port"), "22");
}

}  // namespace
}  // namespace xfer
