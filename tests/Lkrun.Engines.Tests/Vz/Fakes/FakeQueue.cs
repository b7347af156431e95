using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;

namespace Lkrun.Engines.Tests.Vz.Fakes;

/// <summary>
/// A serial dispatch queue: one thread of its own runs the work items in order, each inside an autorelease pool
/// that drains when the item ends. It records which thread ran what, so the fake runtime can tell a message sent
/// on the queue from one sent elsewhere.
/// </summary>
internal sealed class FakeQueue : IDisposable
{
    private readonly BlockingCollection<Action> _items = [];
    private readonly Thread _thread;
    private readonly Action<int> _beginItem;
    private readonly Action<int> _endItem;
    private int _itemCount;

    public FakeQueue(string label, Action<int> beginItem, Action<int> endItem)
    {
        Label = label;
        _beginItem = beginItem;
        _endItem = endItem;
        _thread = new Thread(Run) { IsBackground = true, Name = $"fake queue {label}" };
        _thread.Start();
    }

    public string Label { get; }

    public bool IsCurrent => Thread.CurrentThread == _thread;

    public bool Released { get; set; }

    /// <summary>Runs <paramref name="work"/> on the queue and waits, rethrowing what it threw.</summary>
    public void Sync(Action work)
    {
        ExceptionDispatchInfo? failure = null;
        using var done = new ManualResetEventSlim();
        _items.Add(() =>
        {
            try
            {
                work();
            }
            catch (Exception e)
            {
                failure = ExceptionDispatchInfo.Capture(e);
            }
            finally
            {
                done.Set();
            }
        });
        done.Wait();
        failure?.Throw();
    }

    public void Async(Action work) => _items.Add(work);

    /// <summary>Waits until every item queued so far, and every item those queue, has run.</summary>
    public void Drain()
    {
        for (var i = 0; i < 100; i++)
        {
            var before = Volatile.Read(ref _itemCount);
            Sync(() => { });
            if (Volatile.Read(ref _itemCount) == before + 1 && _items.Count == 0)
            {
                return;
            }
        }
    }

    public void Dispose()
    {
        _items.CompleteAdding();
        if (!IsCurrent)
        {
            _thread.Join();
        }
    }

    private void Run()
    {
        foreach (var item in _items.GetConsumingEnumerable())
        {
            var pool = Interlocked.Increment(ref _itemCount);
            _beginItem(pool);
            try
            {
                item();
            }
            finally
            {
                _endItem(pool);
            }
        }
    }
}
