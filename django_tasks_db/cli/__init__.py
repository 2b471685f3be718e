"""``manage.py tasks``: the control room in a terminal.

The command module only wires argparse to the handlers here; every action goes
through ``control`` and every figure through ``overview``, so the terminal, the
admin and the metrics view agree.
"""
