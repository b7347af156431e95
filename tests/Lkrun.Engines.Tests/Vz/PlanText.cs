using Lkrun.Engines.Vz.Catalogue;
using Lkrun.Engines.Vz.Plan;

namespace Lkrun.Engines.Tests.Vz;

/// <summary>A plan as text, one step a line in Objective-C's own notation with its minimum macOS: what snapshots compare.</summary>
internal static class PlanText
{
    public static string Render(VzPlan plan) => string.Join('\n', plan.Steps.Select(Line)) + "\n";

    public static string Line(VzStep step)
    {
        var text = step switch
        {
            VzCreate create => $"{create.Name} = [[{create.Class} alloc] {Message(create.Initializer, create.Arguments)}]",
            VzSend send => $"[{send.Receiver} {Message(send.Message, send.Arguments)}]",
            VzCheck check => $"check [{check.Receiver} {Message(check.Message, check.Arguments)}]",
            VzArray array => $"{array.Name} = @[{string.Join(", ", array.Items)}]",
            VzSaveData save => $"write [{save.Receiver} {save.Message}] to {save.Path}",
            _ => throw new InvalidOperationException(step.GetType().Name),
        };
        return $"{step.Minimum,-4} {text}";
    }

    private static string Message(string selector, IReadOnlyList<VzArgument> arguments)
    {
        var parts = selector.Split(':', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 1 && !selector.EndsWith(':'))
        {
            return selector;
        }
        var kinds = MessageShapes.Of(VzCatalogue.Selector(selector).Shape).Arguments;
        var values = new Queue<VzArgument>(arguments);
        return string.Join(' ', parts.Select((part, i) => $"{part}:{(kinds[i] == ArgumentKind.ErrorOut ? "&error" : values.Dequeue())}"));
    }
}
