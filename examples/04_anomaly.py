# Step 4: anomaly mode names the op, and your line, that first made a NaN or an Inf.
from tinygrad_lite import AnomalyError, Tensor, detect_anomaly

x = Tensor([0.0, 1.0, 4.0], requires_grad=True)
x.sqrt().sum().backward()        # the forward is fine, sqrt(0) = 0, but d sqrt(x)/dx = 1 / (2 sqrt x)
print("x.grad =", x.grad)        # [inf 0.5 0.25]: nothing stops it, NumPy only warns (on stderr)

x.grad = None
with detect_anomaly():           # run the forward inside too: that is when source lines are recorded
    try:
        y = x.sqrt().sum()
        y.backward()
    except AnomalyError as e:
        print(e)                 # Inf in the backward of op 'sqrt' ... created at ...04_anomaly.py:11
