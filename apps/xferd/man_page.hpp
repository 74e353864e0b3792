#pragma once
// What xferd's man page says beyond its flags (xferd --help-man, a hidden
// flag; the build installs the page). Main thread.

#include "../xfer/cli_doc.hpp"

namespace xfer::server {

xfer::cli::ManInfo xferd_man_info();

}  // namespace xfer::server
