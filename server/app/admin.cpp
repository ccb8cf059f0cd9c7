#include "app/admin.hpp"

#include <cstdlib>
#include <iostream>
#include <pwd.h>
#include <unistd.h>
#include <optional>

#include "app/cli.hpp"
#include "app/service.hpp"
#include "auth/api_key.hpp"
#include "common/log.hpp"
#include "common/money.hpp"
#include "common/strings.hpp"
#include "db/admin_store.hpp"
#include "db/pool.hpp"
#include "db/routing_store.hpp"
#include "db/team_store.hpp"

namespace labelbroker::app {
namespace {

constexpr const char* kAdminUsage = R"(usage: labelbroker admin COMMAND [--config PATH]

Commands:
  create-team NAME                        create a team (no-op if it exists); prints the team's
                                          webhook signing secret on stderr
  create-key --team NAME --role ROLE      create an API key and print it once on stdout;
                                          ROLE is viewer, submitter or admin
  set-team-budget --team NAME --monthly-usd AMOUNT
                                          cap the team's holds and spend per UTC month, e.g.
                                          "2500.00"; "none" removes the cap. Jobs over it
                                          pause as budget_exhausted until it is raised
  set-team-deny --team NAME --vendors ID,ID
                                          the team's permanent deny list (conflict-of-interest
                                          rules): routing never gives its work to these vendors
                                          and moves unstarted work off them; "none" clears it

Every change is written to the audit trail (GET /v1/audit) as made by the CLI and the
operating-system user. Applies pending migrations first. Exit codes: 0 ok, 1 database failure or unknown team,
2 usage error.
)";

// The audit trail names the operating-system user for changes made here.
db::AuditContext cli_audit() {
  db::AuditContext context;
  context.actor.type = "cli";
  const char* user = std::getenv("SUDO_USER");
  if (!user || !*user) user = std::getenv("USER");
  if (user && *user) {
    context.actor.name = user;
  } else if (const auto* pw = ::getpwuid(::geteuid())) {
    context.actor.name = pw->pw_name;
  } else {
    context.actor.name = "uid " + std::to_string(::geteuid());
  }
  return context;
}

db::PoolOptions one_connection(const config::Config& cfg) {
  db::PoolOptions o = pool_options(cfg);
  o.size = 1;
  o.application_name = "labelbroker-admin";
  return o;
}

int usage_error(const std::string& message) {
  std::cerr << "labelbroker admin: " << message << "\n" << kAdminUsage;
  return kExitUsage;
}

}  // namespace

int admin(const config::Config& cfg, const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kAdminUsage;
    return args.empty() ? kExitUsage : kExitOk;
  }
  const std::string& command = args[0];
  std::optional<std::string> team, role_text, name, monthly, vendor_list;
  for (size_t i = 1; i < args.size(); ++i) {
    if ((args[i] == "--team" || args[i] == "--role" || args[i] == "--monthly-usd" || args[i] == "--vendors") &&
        i + 1 < args.size()) {
      (args[i] == "--team"          ? team
       : args[i] == "--role"        ? role_text
       : args[i] == "--monthly-usd" ? monthly
                                    : vendor_list) = args[i + 1];
      ++i;
    } else if (args[i].rfind("--", 0) == 0) {
      return usage_error("unknown option '" + args[i] + "'");
    } else if (!name) {
      name = args[i];
    } else {
      return usage_error("unexpected argument '" + args[i] + "'");
    }
  }

  if (command == "create-team") {
    if (!name || team || role_text) return usage_error("create-team takes exactly one NAME");
    if (!common::is_slug(*name))
      return usage_error(
          "team names are 1-63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit");
  } else if (command == "create-key") {
    if (name || !team || !role_text) return usage_error("create-key needs --team NAME and --role ROLE");
    if (!auth::parse_role(*role_text))
      return usage_error("unknown role '" + *role_text + "' (viewer, submitter, admin)");
  } else if (command == "set-team-budget") {
    if (name || !team || !monthly || role_text)
      return usage_error("set-team-budget needs --team NAME and --monthly-usd AMOUNT");
    if (*monthly != "none" && !common::parse_usd_micros(*monthly))
      return usage_error("--monthly-usd takes a decimal amount of US dollars (e.g. 2500.00) or none");
  } else if (command == "set-team-deny") {
    if (name || !team || !vendor_list || role_text || monthly)
      return usage_error("set-team-deny needs --team NAME and --vendors ID,ID (or none)");
  } else {
    return usage_error("unknown admin command '" + command + "'");
  }
  if (command != "set-team-deny" && vendor_list) return usage_error("--vendors belongs to set-team-deny");
  std::vector<std::string> denied;
  if (vendor_list && *vendor_list != "none") {
    std::string rest = *vendor_list + ",";
    for (auto comma = rest.find(','); comma != std::string::npos; rest.erase(0, comma + 1), comma = rest.find(',')) {
      const std::string id = rest.substr(0, comma);
      if (!common::is_slug(id)) return usage_error("'" + id + "' is not a vendor id");
      bool configured = false;
      for (const auto& v : cfg.vendors) configured = configured || v.id == id;
      if (!configured) std::cerr << "labelbroker admin: note: vendor '" << id << "' is not configured here\n";
      denied.push_back(id);
    }
  }
  if (command != "create-key" && role_text) return usage_error("--role belongs to create-key");

  if (int code = migrate(cfg); code != kExitOk) return code;
  try {
    db::ConnectionPool pool(one_connection(cfg));
    if (command == "create-team") {
      auto created_team = pool.run([&](pqxx::connection& c) { return db::create_team(c, {*name, {}, {}}, cli_audit()); });
      const bool created = created_team.has_value();
      auto record = pool.run([&](pqxx::connection& c) { return db::find_team(c, *name); }).value();
      const auto secret =
          pool.run([&, id = record.id](pqxx::connection& c) { return db::team_webhook_secret(c, id); });
      std::cout << (created ? "created team " : "team already exists: ") << record.name << "\n";
      // On stderr, like create-key's notice: stdout stays the one status line scripts rely on.
      // Printed for an existing team too, so an operator can recover it to verify webhooks.
      if (secret) std::cerr << "webhook secret for team " << record.name << ": " << *secret << "\n";
      return kExitOk;
    }
    auto record = pool.run([&](pqxx::connection& c) { return db::find_team(c, *team); });
    if (!record) {
      std::cerr << "labelbroker admin: no team '" << *team << "'; create it with: labelbroker admin create-team "
                << *team << "\n";
      return kExitFailure;
    }
    if (command == "set-team-deny") {
      db::TeamChange change;
      change.denied_vendors = denied;
      pool.run([&](pqxx::connection& c) { return db::update_team(c, record->name, change, cli_audit()); });
      std::string list;
      for (const auto& id : denied) list += (list.empty() ? "" : ",") + id;
      std::cout << "team " << record->name << " denies: " << (list.empty() ? "none" : list) << "\n";
      return kExitOk;
    }
    if (command == "set-team-budget") {
      const auto cap = *monthly == "none" ? std::nullopt : common::parse_usd_micros(*monthly);
      db::TeamChange change;
      change.monthly_budget_micros = cap;
      pool.run([&](pqxx::connection& c) { return db::update_team(c, record->name, change, cli_audit()); });
      std::cout << "team " << record->name << " monthly budget: "
                << (cap ? common::format_usd(*cap) + " USD" : std::string("none")) << "\n";
      return kExitOk;
    }
    const auto key = auth::generate_api_key();
    pool.run([&](pqxx::connection& c) {
      return db::create_key(c, {record->id, key.prefix, key.secret_hash, *role_text, std::nullopt, std::nullopt},
                            cli_audit());
    });
    std::cerr << "labelbroker admin: created a " << *role_text << " key for team " << record->name << " (prefix "
              << key.prefix << "); it is shown only now\n";
    std::cout << key.plaintext << "\n";
    return kExitOk;
  } catch (const std::exception& e) {
    std::cerr << "labelbroker admin: database failure: " << e.what() << "\n";
    return kExitFailure;
  }
}

}  // namespace labelbroker::app
