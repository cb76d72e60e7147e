/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <locale.h>
#include <signal.h>

#include "cli.h"

int main(int argc, char **argv) {
        setlocale(LC_ALL, "C.UTF-8");

        /* A closed pipe (cocoon image list | head) must end the write with EPIPE, not kill us
         * halfway through a pull's cleanup. */
        signal(SIGPIPE, SIG_IGN);

        return cli_main(argc, argv);
}
