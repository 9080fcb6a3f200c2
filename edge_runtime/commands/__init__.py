"""The command-line glue: options generated from config dataclasses, ``--config``, the exit codes
(``options``), and the runtime's commands (``run``, ``replay``, ``triage``, ``operating-point``);
each handler imports its heavy modules only when it runs."""
