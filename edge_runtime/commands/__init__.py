"""The command-line glue of the runtime's commands (``run``, ``replay``, ``triage``,
``operating-point``); each handler imports its heavy modules only when it runs."""
