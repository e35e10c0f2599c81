import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from semiseq.data import EOS, PAD
from semiseq.nets import Backbone, Classifier
from semiseq.objectives.lm import LanguageModel, teacher_forcing
from semiseq.objectives.sa import SequenceAutoencoder

V = 20


def token_loss(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over real (non-PAD) target tokens, and their count: a reference written out."""
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD, reduction="sum")
    count = (targets != PAD).sum()
    return loss / count, count


def padded_batch(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, V, (len(lengths), max(lengths)), generator=g)
    for row, n in enumerate(lengths):
        tokens[row, n:] = PAD
    return tokens, torch.tensor(lengths)


def test_encoder_and_decoder_of_the_sequence_autoencoder_are_the_same_parameters():
    torch.manual_seed(0)
    sa = SequenceAutoencoder(Backbone(V, 8, 16, num_layers=2))
    assert sa.encoder is sa.decoder
    own = {id(p) for p in sa.parameters()}
    assert own == {id(p) for p in sa.backbone.parameters()} | {id(p) for p in sa.output.parameters()}
    # Both the reading and the reconstruction pass push gradient into the one embedding matrix:
    tokens, lengths = padded_batch([5, 3])
    token_loss(*sa(tokens, lengths))[0].backward()
    with_encoder = sa.backbone.embedding.weight.grad.clone()
    sa.zero_grad()
    lm = LanguageModel(sa.backbone)  # the same decoder pass without the encoder
    token_loss(*lm(tokens, lengths))[0].backward()
    assert not torch.allclose(with_encoder, sa.backbone.embedding.weight.grad)


def test_teacher_forcing_shifts_in_eos_and_ends_with_eos():
    tokens, lengths = padded_batch([3, 1])
    inputs, targets = teacher_forcing(tokens, lengths)
    assert inputs[:, 0].tolist() == [EOS, EOS]
    assert inputs[0, 1:4].tolist() == tokens[0, :3].tolist()
    assert targets[0].tolist() == tokens[0, :3].tolist() + [EOS]
    assert targets[1].tolist() == [tokens[1, 0].item(), EOS, PAD, PAD]


def test_encode_gives_the_state_at_each_real_end_like_packing():
    torch.manual_seed(0)
    bb = Backbone(V, 8, 16, num_layers=2)
    tokens, lengths = padded_batch([3, 7, 7, 1, 5, 2])
    h, c = bb.encode(tokens, lengths)
    packed = pack_padded_sequence(bb.embedding(tokens), lengths, batch_first=True, enforce_sorted=False)
    _, (h_ref, c_ref) = bb.lstm(packed)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(c, c_ref)


def test_encode_hands_the_lstm_contiguous_states_as_cudnn_requires():
    """cuDNN's LSTM refuses a non-contiguous (h, c) ("rnn: hx is not contiguous"); the CPU one takes it, so the
    check is written out: every call of encode's segment loop, 2 layers, rows ending at several lengths."""
    torch.manual_seed(0)
    bb = Backbone(V, 8, 16, num_layers=2)
    seen = []
    bb.lstm.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
    tokens, lengths = padded_batch([3, 7, 7, 1, 5, 2])
    bb.encode(tokens, lengths, tuple(torch.randn(2, 6, 16) for _ in range(2)))
    states = [s for s in seen if s is not None]
    assert len(states) == len(set(lengths.tolist())) and all(t.is_contiguous() for s in states for t in s)


def test_padding_does_not_change_a_prediction_or_a_loss():
    torch.manual_seed(0)
    clf = Classifier(Backbone(V, 8, 16), num_classes=3, hidden_dim=8).eval()
    sa = SequenceAutoencoder(Backbone(V, 8, 16)).eval()
    tokens, lengths = padded_batch([4, 9, 2])
    for row in range(3):
        n = int(lengths[row])
        alone = tokens[row:row + 1, :n], lengths[row:row + 1]
        torch.testing.assert_close(clf(*alone)[0], clf(tokens, lengths)[row])
        logits, targets = sa(tokens, lengths)
        in_batch = F.cross_entropy(logits[row], targets[row], ignore_index=PAD, reduction="sum")
        torch.testing.assert_close(token_loss(*sa(*alone))[0] * (n + 1), in_batch)


def test_truncated_bptt_windows_give_the_same_loss_values():
    torch.manual_seed(0)
    tokens, lengths = padded_batch([9, 4, 7, 1])
    for net in (LanguageModel(Backbone(V, 8, 16, num_layers=2)), SequenceAutoencoder(Backbone(V, 8, 16))):
        net.eval()
        full, count = token_loss(*net(tokens, lengths))
        windows = list(net.window_losses(tokens, lengths, window=3))
        assert len(windows) == 4  # 10 decoder steps (9 tokens + <eos>)
        torch.testing.assert_close(sum(windows) / count, full)
        (whole,) = net.window_losses(tokens, lengths, window=100)
        torch.testing.assert_close(whole / count, full)


def test_encode_windows_matches_encode_and_truncates_the_gradient():
    torch.manual_seed(0)
    bb = Backbone(V, 8, 16)
    tokens, lengths = padded_batch([9, 4, 7])
    h, c = bb.encode_windows(tokens, lengths, window=3)
    h_ref, c_ref = bb.encode(tokens, lengths)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(c, c_ref)
    # Row 0 ends in the third window (steps 6-8): its state's gradient reaches those tokens only.
    emb = bb.embedding.weight
    h[0, 0].sum().backward()
    touched = set(torch.nonzero(emb.grad.abs().sum(1)).flatten().tolist())
    assert touched == set(tokens[0, 6:9].tolist())


def test_adaptive_softmax_is_a_distribution_and_ignores_padding():
    torch.manual_seed(0)
    vocab = 60
    lm = LanguageModel(Backbone(vocab, 8, 16), softmax="adaptive", cutoffs=(10, 30)).eval()
    assert lm.adaptive
    tokens, lengths = padded_batch([6, 2, 5])
    tokens = tokens * 3 % vocab  # ids across all clusters
    for row, n in enumerate(lengths.tolist()):
        tokens[row, n:] = PAD
    log_probs, targets = lm(tokens, lengths)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 7))
    (whole,) = lm.window_losses(tokens, lengths, 100)
    expected = F.nll_loss(log_probs.flatten(0, 1), targets.flatten(), ignore_index=PAD, reduction="sum")
    torch.testing.assert_close(whole, expected)
    assert not LanguageModel(Backbone(20, 8, 16), softmax="adaptive", cutoffs=(2000,)).adaptive  # vocab too small
