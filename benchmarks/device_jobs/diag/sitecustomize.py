# Put on PYTHONPATH to find where a hung process is: every process started with it writes all its threads'
# Python stacks to $STACK_DIR/stack-PID.txt every $STACK_EVERY_S seconds (faulthandler, works with the GIL held).
import faulthandler
import os

if os.environ.get("STACK_DIR"):
    _f = open(os.path.join(os.environ["STACK_DIR"], f"stack-{os.getpid()}.txt"), "w")
    faulthandler.dump_traceback_later(float(os.environ.get("STACK_EVERY_S", 60)), repeat=True, file=_f)
