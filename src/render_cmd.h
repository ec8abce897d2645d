/* `runboat render`: renders a build's kubefiles from the command line,
 * through the same code path as the controller (kubefiles_render), for
 * kubefile authors and tests. */
#ifndef RUNBOAT_RENDER_CMD_H
#define RUNBOAT_RENDER_CMD_H

/* argv[0] is "render"; the options follow (see --help). Prints the objects
 * on stdout, errors on stderr. Returns the process exit code: 0, 1 when the
 * kubefiles do not render, 2 for a usage or configuration error. */
int render_cmd_main(int argc, char **argv);

#endif
