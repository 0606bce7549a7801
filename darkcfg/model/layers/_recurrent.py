"""What the recurrent layers share ([rnn], [lstm], [gru], [crnn], [conv_lstm], [history]): time steps and state.

**Time steps.** In training the reference's batch is `mini_batch * time_steps` images in step-major order
(step t of sequence s at index `t * mini_batch + s`), and a recurrent layer walks the `time_steps` steps in
order, carrying its state from one to the next; autograd then back-propagates through the steps. At
inference (`detector test`/`demo` build the network with time_steps=1) every forward is one step.

**State across forwards.** The state left by the last step is kept (detached) for the next forward, one
state per batch slot: image k of a batch continues the state image k of the previous batch left, as the
reference's `l.state` does between `network_predict` calls (frame after frame of a video). `reset_state()`
clears it (`Darknet.reset_state()` for every layer); a forward whose batch size differs from the kept state's
starts from zero. Which layers zero their state at the start of each *training* forward follows the
reference (`zero_in_training`): [rnn] and [crnn] do, [lstm], [conv_lstm], [gru] and [history] carry it.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from darkcfg.model.layers._base import Blob, DarknetLayer, Shape

State = tuple[Tensor, ...]


class Recurrent(DarknetLayer):
    """Base class: subclasses implement `zero_state(b, like)` and `step(x_t, state) -> (y_t, state)` with x_t
    (b, C, H, W) one step's input, y_t (b, C', H', W') its output; `subs` lists the sub-layers in the order the
    reference stores their weights."""

    zero_in_training: bool = False
    stateful = True

    def __init__(self, in_shape: Shape, out_shape: Shape, steps: int) -> None:
        super().__init__(in_shape, out_shape)
        self.steps = steps
        self._state: Optional[State] = None

    @property
    def subs(self) -> list[DarknetLayer]:
        raise NotImplementedError

    def zero_state(self, b: int, like: Tensor) -> State:
        raise NotImplementedError

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        raise NotImplementedError

    def reset_state(self) -> None:
        """Forget the state carried from the last forward (a new video, a new sequence)."""
        self._state = None

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        steps = self.steps if self.training else 1
        if x.shape[0] % steps:
            raise ValueError(f"layer {self.index} [{self.ltype}]: a batch of {x.shape[0]} images is not a whole "
                             f"number of sequences of time_steps={steps}")
        b = x.shape[0] // steps
        state = self._state
        if state is None or state[0].shape[0] != b or state[0].device != x.device or (
                self.training and self.zero_in_training):
            state = self.zero_state(b, x)
        else:
            state = tuple(s.to(x.dtype) for s in state)
        ys = []
        for t in range(steps):
            y, state = self.step(x[t * b:(t + 1) * b], state)
            ys.append(y)
        self._state = tuple(s.detach() for s in state)
        return ys[0] if steps == 1 else torch.cat(ys)

    def darknet_blobs(self, transpose: bool = False) -> list[Blob]:
        return [blob for sub in self.subs for blob in sub.darknet_blobs(transpose)]

    def _table(self, title: str, indent: str = "") -> str:
        """The reference's build print: a title line, then one line per sub-layer in creation order."""
        return title + "".join(f"\n{indent}{sub.describe()}" for sub in self.creation_order)

    @property
    def creation_order(self) -> list[DarknetLayer]:
        return self.subs


class ThreeLayerRecurrent(Recurrent):
    """[rnn] and [crnn]: sub-layers input_layer, self_layer and output_layer (also their weights' order); per step
    h = input_layer(x) + self_layer(h_prev) (+ h_prev with `shortcut`), output output_layer(h). In training the
    reference zeroes the state at the start of each forward."""

    zero_in_training = True
    shortcut: bool = False
    input_layer: DarknetLayer
    self_layer: DarknetLayer
    output_layer: DarknetLayer

    @property
    def subs(self) -> list[DarknetLayer]:
        return [self.input_layer, self.self_layer, self.output_layer]

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        new = self.input_layer(x, []) + self.self_layer(h, [])
        if self.shortcut:
            new = new + h
        return self.output_layer(new, []), (new,)
