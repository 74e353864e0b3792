// xfer remote add|list|show|remove and xfer credentials seal|unseal|passwd:
// the named remotes and secrets of credentials.toml
// (include/xfer/backend/credentials.hpp). Main thread only.

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "../common.hpp"
#include "xfer/backend/credentials.hpp"
#include "xfer/core/secrets.hpp"

namespace xfer::cli {
namespace {

using nlohmann::json;

// A fresh read of the file (not the process's cached one): these commands
// change it.
Result<CredentialStore> load_store() {
  return CredentialStore::load(context().credentials->path());
}

int fail(const Error& e) {
  print_error(e);
  return kExitFailure;
}

// The passphrase for sealing: asked twice on a terminal (a typo would lock
// the secrets away), else from --passphrase-file or $XFER_PASSPHRASE.
Result<std::string> new_passphrase() {
  if (!context().passphrase_file.empty() || std::getenv("XFER_PASSPHRASE") != nullptr) {
    return passphrase_from(context().passphrase_source);
  }
  XFER_ASSIGN_OR_RETURN(std::string first, prompt_passphrase("New passphrase: "));
  XFER_ASSIGN_OR_RETURN(std::string again, prompt_passphrase("Again: "));
  if (first != again) {
    return make_error(ErrorCode::kInvalidArgument, "passphrase", "", "the two did not match");
  }
  return first;
}

std::string shown_value(const RemoteSpec& r, const std::string& key, const std::string& v) {
  if (!is_secret_key(r.type, key)) return v;
  return is_sealed(v) ? "(sealed)" : "(secret)";
}

void register_remote_commands(CLI::App& app) {
  CLI::App* remote = app.add_subcommand("remote", "Named remotes: add, list, show, remove");
  remote->require_subcommand(1);
  remote->footer(
      "Types and keys:\n  xfer   host port token tls tls_ca\n"
      "  sftp   host port user key_file password key_passphrase known_hosts\n"
      "  s3     endpoint region access_key_id secret_access_key session_token path_style\n"
      "  azure  account key sas_token endpoint connection_string\n"
      "  http   url user password bearer_token ca\n"
      "Use a remote as NAME:path (xfer cp file lab:/data/). Stored in "
      "~/.config/xfer/credentials.toml (mode 0600).");

  struct AddArgs {
    std::string name, type;
    std::vector<std::string> pairs;
  };
  auto add = std::make_shared<AddArgs>();
  CLI::App* add_cmd = remote->add_subcommand("add", "Add or replace: NAME TYPE key=value...");
  add_cmd->add_option("name", add->name, "Remote name")->required();
  add_cmd->add_option("type", add->type, "xfer, sftp, s3, azure or http")->required();
  add_cmd->add_option("settings", add->pairs, "key=value ...");
  add_cmd->callback([add] {
    context().exit_code = [&]() -> int {
      auto store = load_store();
      if (!store) return fail(store.error());
      RemoteSpec spec;
      spec.name = add->name;
      spec.type = add->type;
      for (const auto& p : add->pairs) {
        const auto eq = p.find('=');
        if (eq == std::string::npos || eq == 0) {
          throw CLI::ValidationError("settings", "expected key=value, got " + p);
        }
        spec.fields[p.substr(0, eq)] = p.substr(eq + 1);
      }
      // A file whose secrets are sealed keeps them sealed: new ones too.
      const bool seal = store->any_sealed();
      if (Status s = store->put_remote(spec); !s.ok()) return fail(s.error());
      if (seal) {
        auto pass = passphrase_from(context().passphrase_source);
        if (!pass) return fail(pass.error());
        // The passphrase must be the file's: check it on a sealed secret.
        CredentialStore probe = *store;
        if (Status s = probe.unseal_all(*pass); !s.ok()) return fail(s.error());
        if (Status s = store->seal_all(*pass); !s.ok()) return fail(s.error());
      }
      if (Status s = store->save(); !s.ok()) return fail(s.error());
      return kExitOk;
    }();
  });

  auto list_json = std::make_shared<bool>(false);
  CLI::App* list_cmd = remote->add_subcommand("list", "The remotes: name, type, where");
  list_cmd->add_flag("--json", *list_json, "One JSON object per remote");
  list_cmd->callback([list_json] {
    auto store = load_store();
    if (!store) {
      context().exit_code = fail(store.error());
      return;
    }
    for (const auto& r : store->remotes()) {
      std::string where = r.fields.count("host")       ? r.fields.at("host")
                          : r.fields.count("url")      ? r.fields.at("url")
                          : r.fields.count("endpoint") ? r.fields.at("endpoint")
                          : r.fields.count("account")  ? r.fields.at("account")
                                                       : "";
      if (*list_json) {
        print_out(
            "{}\n",
            json{{"schema", kJsonSchema}, {"name", r.name}, {"type", r.type}, {"where", where}}
                .dump());
      } else {
        print_out("{:<16} {:<6} {}\n", r.name, r.type, where);
      }
    }
  });

  auto show_name = std::make_shared<std::string>();
  CLI::App* show_cmd = remote->add_subcommand("show", "A remote's settings (secrets hidden)");
  show_cmd->add_option("name", *show_name, "Remote name")->required();
  show_cmd->callback([show_name] {
    auto store = load_store();
    if (!store) {
      context().exit_code = fail(store.error());
      return;
    }
    const RemoteSpec* r = store->remote(*show_name);
    if (r == nullptr) {
      context().exit_code = fail(make_error(ErrorCode::kNotFound, "remote", *show_name,
                                            "no such remote (xfer remote list)"));
      return;
    }
    print_out("[{}]\ntype = {}\n", r->name, r->type);
    for (const auto& [k, v] : r->fields) print_out("{} = {}\n", k, shown_value(*r, k, v));
  });

  auto rm_name = std::make_shared<std::string>();
  CLI::App* rm_cmd = remote->add_subcommand("remove", "Forget a remote");
  rm_cmd->alias("rm");
  rm_cmd->add_option("name", *rm_name, "Remote name")->required();
  rm_cmd->callback([rm_name] {
    context().exit_code = [&]() -> int {
      auto store = load_store();
      if (!store) return fail(store.error());
      if (!store->remove_remote(*rm_name)) {
        return fail(make_error(ErrorCode::kNotFound, "remote", *rm_name, "no such remote"));
      }
      if (Status s = store->save(); !s.ok()) return fail(s.error());
      return kExitOk;
    }();
  });
}

void register_credentials_commands(CLI::App& app) {
  CLI::App* cred =
      app.add_subcommand("credentials", "Seal or open the secrets of credentials.toml");
  cred->require_subcommand(1);
  cred->footer(
      "Secrets are sealed with Argon2id + XChaCha20-Poly1305 (libsodium). The passphrase comes "
      "from --passphrase-file, $XFER_PASSPHRASE or the terminal.");
  cred->add_subcommand("seal", "Seal every plaintext secret with a passphrase")->callback([] {
    context().exit_code = [&]() -> int {
      auto store = load_store();
      if (!store) return fail(store.error());
      if (!store->any_plain_secret()) {
        print_warning("no plaintext secret to seal");
        return kExitOk;
      }
      // Sealed ones already there fix the passphrase: it must open them.
      auto pass =
          store->any_sealed() ? passphrase_from(context().passphrase_source) : new_passphrase();
      if (!pass) return fail(pass.error());
      if (store->any_sealed()) {
        CredentialStore probe = *store;
        if (Status s = probe.unseal_all(*pass); !s.ok()) return fail(s.error());
      }
      if (Status s = store->seal_all(*pass); !s.ok()) return fail(s.error());
      if (Status s = store->save(); !s.ok()) return fail(s.error());
      return kExitOk;
    }();
  });
  cred->add_subcommand("unseal", "Store every secret as plaintext again")->callback([] {
    context().exit_code = [&]() -> int {
      auto store = load_store();
      if (!store) return fail(store.error());
      auto pass = passphrase_from(context().passphrase_source);
      if (!pass) return fail(pass.error());
      if (Status s = store->unseal_all(*pass); !s.ok()) return fail(s.error());
      if (Status s = store->save(); !s.ok()) return fail(s.error());
      return kExitOk;
    }();
  });
  auto new_file = std::make_shared<std::string>();
  CLI::App* passwd =
      cred->add_subcommand("passwd", "Seal the secrets again under a new passphrase");
  passwd->add_option("--new-passphrase-file", *new_file,
                     "The new passphrase's file (default: asked on the terminal)");
  passwd->callback([new_file] {
    context().exit_code = [&]() -> int {
      auto store = load_store();
      if (!store) return fail(store.error());
      auto old_pass = passphrase_from(context().passphrase_source);
      if (!old_pass) return fail(old_pass.error());
      if (Status s = store->unseal_all(*old_pass); !s.ok()) return fail(s.error());
      auto pass = new_file->empty() ? [] {
        auto p = prompt_passphrase("New passphrase: ");
        if (!p) return p;
        auto again = prompt_passphrase("Again: ");
        if (!again) return again;
        if (*p != *again) {
          return Result<std::string>(make_error(ErrorCode::kInvalidArgument, "passphrase", "",
                                                "the two did not match"));
        }
        return p;
      }()
                                    : read_passphrase_file(*new_file);
      if (!pass) return fail(pass.error());
      if (Status s = store->seal_all(*pass); !s.ok()) return fail(s.error());
      if (Status s = store->save(); !s.ok()) return fail(s.error());
      return kExitOk;
    }();
  });
}

}  // namespace

void register_remote(CLI::App& app) {
  register_remote_commands(app);
  register_credentials_commands(app);
}

}  // namespace xfer::cli
